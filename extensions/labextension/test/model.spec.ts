import {
  Backoff,
  baseModelDetails,
  IJob,
  ITrial,
  ITuning,
  bestJob,
  bestText,
  classificationOf,
  trainable,
  endedSince,
  estimateEta,
  idleGpuWarning,
  objectivePlot,
  parseParameter,
  parseSearchEntry,
  progressFraction,
  progressText,
  queueText,
  endpointQueueText,
  savedRequestProblem,
  statusText,
  trialJobIds,
  tuningSummary,
  ISchedule,
  jobFileLabPath,
  runText,
  scheduleSummary,
  scheduledRun,
  rolloutText,
  copiesText,
  driftText,
  seriesLines,
  trafficSummary,
  chosenText,
  isOptimizationJob,
  mobilePlot,
  optimizationTitle,
  IOptimization
} from '../src/model';

function job(id: string, state: string, extra: Partial<IJob> = {}): IJob {
  return { id, state, created: 0, restarts: 0, replicas: {}, spec: { name: id }, ...extra };
}

describe('endedSince', () => {
  it('reports a job that went from running to an end state, once', () => {
    const before = [job('a', 'running'), job('b', 'pending')];
    const after = [job('a', 'succeeded'), job('b', 'running')];
    expect(endedSince(before, after).map(c => [c.job.id, c.from, c.job.state])).toEqual([
      ['a', 'running', 'succeeded']
    ]);
    expect(endedSince(after, after)).toEqual([]);
  });

  it('says nothing about jobs that had ended before the panel opened', () => {
    expect(endedSince(null, [job('a', 'failed')])).toEqual([]);
    expect(endedSince([], [job('new', 'failed')])).toEqual([]);
  });

  it('reports failures and cancellations too', () => {
    const ended = endedSince(
      [job('x', 'running'), job('y', 'running')],
      [job('x', 'failed'), job('y', 'cancelled')]
    );
    expect(ended.map(c => c.job.state)).toEqual(['failed', 'cancelled']);
  });
});

describe('progress', () => {
  it('counts epochs from 1 for people and mixes in the steps', () => {
    const j = job('a', 'running', { progress: { epoch: 1, epochs: 4, step: 50, steps: 100 } });
    expect(progressText(j)).toBe('epoch 2/4 · step 50/100');
    expect(progressFraction(j)).toBeCloseTo(1.5 / 4);
  });

  it('shows the ETA only while the job runs', () => {
    const p = { epoch: 0, epochs: 2, step: 1, steps: 10, eta_s: 125 };
    expect(progressText(job('a', 'running', { progress: p }))).toContain('ETA 2 min');
    expect(progressText(job('a', 'failed', { progress: p }))).not.toContain('ETA');
  });

  it('has no fraction before the first training step, and 1 when succeeded', () => {
    expect(progressFraction(job('a', 'pending'))).toBeNull();
    expect(progressText(job('a', 'pending'))).toBe('');
    expect(progressFraction(job('a', 'succeeded'))).toBe(1);
  });

  it('estimates the time left from the rate between two sightings', () => {
    expect(estimateEta({ time: 100, fraction: 0.1 }, { time: 110, fraction: 0.2 })).toBeCloseTo(
      80
    );
    expect(estimateEta({ time: 100, fraction: 0.2 }, { time: 110, fraction: 0.2 })).toBeNull();
    expect(estimateEta({ time: 100, fraction: 0.5 }, { time: 110, fraction: 1 })).toBeNull();
  });
});

describe('Backoff', () => {
  it('doubles while nothing changes, up to the maximum, and resets on a change', () => {
    const b = new Backoff(1000, 8000);
    expect([1, 2, 3, 4].map(() => b.next({ changed: false, busy: false }))).toEqual([
      2000, 4000, 8000, 8000
    ]);
    expect(b.next({ changed: true, busy: false })).toBe(1000);
  });

  it('stays fast while a job runs', () => {
    const b = new Backoff(1000, 30000);
    const delays = [1, 2, 3, 4, 5].map(() => b.next({ changed: false, busy: true }));
    expect(Math.max(...delays)).toBe(1000);
  });

  it('slows down after errors', () => {
    const b = new Backoff(1000, 30000);
    expect(b.next({ changed: false, busy: true, failed: true })).toBe(4000);
    expect(b.next({ changed: false, busy: true, failed: true })).toBe(8000);
  });
});

describe('statusText', () => {
  it('counts running jobs and workbench GPUs in use', () => {
    const jobs = [job('a', 'running'), job('b', 'pending'), job('c', 'succeeded')];
    expect(statusText(jobs, { workbench: { total: 4, free: 1 } })).toBe(
      'GPUs 3/4 in use · 2 jobs running'
    );
    expect(statusText([], { workbench: { total: 0, free: 0 } })).toBe('0 jobs running');
    expect(statusText([job('a', 'running')], null)).toBe('1 job running');
  });
});

describe('parseParameter', () => {
  it('gives back the type the notebook declares', () => {
    expect(parseParameter('12', 'int')).toEqual({ ok: true, value: 12 });
    expect(parseParameter('0.5', 'float')).toEqual({ ok: true, value: 0.5 });
    expect(parseParameter('False', 'bool')).toEqual({ ok: true, value: false });
    expect(parseParameter('adam', 'str')).toEqual({ ok: true, value: 'adam' });
    expect(parseParameter('[1, 2]', 'list')).toEqual({ ok: true, value: [1, 2] });
  });

  it('says what is wrong with a bad value', () => {
    expect(parseParameter('1.5', 'int')).toEqual({ ok: false, error: '"1.5" is not a whole number' });
    expect(parseParameter('', 'float')).toMatchObject({ ok: false });
    expect(parseParameter('yes', 'bool')).toMatchObject({ ok: false });
    expect(parseParameter('[1,', 'list')).toMatchObject({ ok: false });
  });
});

describe('savedRequestProblem', () => {
  it('accepts a named predict body', () => {
    expect(savedRequestProblem('two cats', '{"instances": [[1, 2]]}')).toBeNull();
  });
  it('says what is missing', () => {
    expect(savedRequestProblem('  ', '{"instances": []}')).toMatch(/Name the request/);
    expect(savedRequestProblem('x'.repeat(61), '{"instances": []}')).toMatch(/1 to 60/);
    expect(savedRequestProblem('a', '{"instances": [')).toMatch(/not valid JSON/);
    expect(savedRequestProblem('a', '{"inputs": [1]}')).toMatch(/\{"instances": \[\.\.\.\]\}/);
    expect(savedRequestProblem('a', 'null')).toMatch(/predict body/);
  });
});

describe('queueText', () => {
  it('says where a queued job stands and why, and nothing once it runs', () => {
    const queue = { position: 2, reason: 'waiting for 1 GPU (0 free); 1 job ahead, of ana' };
    expect(queueText(job('a', 'queued', { queue }))).toBe(
      '#2 in the queue: waiting for 1 GPU (0 free); 1 job ahead, of ana'
    );
    expect(queueText(job('a', 'running', { queue }))).toBe('');
    expect(queueText(job('a', 'queued'))).toBe('');
  });
});

describe('endpointQueueText', () => {
  it("says where an endpoint's pods wait for Kueue, and nothing once it is up", () => {
    const ep = { name: 'scorer', url: '', versions: [1], running: false };
    const queue = { position: 1, reason: "waiting in Kueue's queue: insufficient quota" };
    expect(endpointQueueText({ ...ep, queue })).toBe(
      "#1 in the queue: waiting in Kueue's queue: insufficient quota"
    );
    expect(endpointQueueText({ ...ep, queue: { position: null, reason: 'waiting' } })).toBe(
      'waiting'
    );
    expect(endpointQueueText({ ...ep, running: true, queue })).toBe('');
    expect(endpointQueueText(ep)).toBe('');
  });
});

describe('idleGpuWarning', () => {
  const waiting = { gpus: 2, idle_limit_s: 600 };
  it('warns a server holding GPUs while jobs wait for GPUs', () => {
    const gpus = { workbench: { total: 2, free: 0 }, visible: ['0'], waiting_for_gpus: waiting };
    expect(idleGpuWarning(gpus)).toBe(
      'jobs wait for 2 GPUs: this server stops after 10 min without activity'
    );
    expect(statusText([], gpus)).toBe(
      'GPUs 2/2 in use · 0 jobs running · jobs wait for 2 GPUs: this server stops after ' +
        '10 min without activity'
    );
  });
  it('says nothing to a CPU server, or when no job waits', () => {
    const wb = { total: 2, free: 0 };
    expect(idleGpuWarning({ workbench: wb, visible: [], waiting_for_gpus: waiting })).toBe('');
    const none = { gpus: 0, idle_limit_s: 600 };
    expect(idleGpuWarning({ workbench: wb, visible: ['0'], waiting_for_gpus: none })).toBe('');
    expect(idleGpuWarning(null)).toBe('');
  });
});

describe('tuning runs', () => {
  const trial = (id: string, objective: number | null, state = 'succeeded', extra = {}) => ({
    id,
    job: `hb-1-t${id}`,
    params: { lr: 0.0123456, kind: 'a' },
    state,
    objective,
    ...extra
  });
  const run = (trials: ITrial[], direction: 'max' | 'min' = 'max', best: string | null = null) =>
    ({
      id: 'hb-1',
      name: 'hb',
      state: 'running',
      created: 0,
      algorithm: 'hyperband',
      objective: { name: 'score', direction },
      max_trials: 6,
      parallel: 2,
      trials,
      best
    }) as ITuning;

  it('sums a run up and names its best trial with its parameters', () => {
    const r = run([trial('0', 0.5), trial('1', 0.9), trial('2', null, 'running')], 'max', '1');
    expect(tuningSummary(r)).toBe('2/6 trials done · 2 at a time · hyperband · max score');
    expect(bestText(r)).toBe('Best: trial 1, score 0.9 (lr=0.01235, kind=a)');
    expect(bestText(run([trial('0', null, 'running')]))).toBeNull();
    expect([...trialJobIds([r])]).toEqual(['hb-1-t0', 'hb-1-t1', 'hb-1-t2']);
    expect(trialJobIds(null).size).toBe(0);
  });

  it('deploys the best trial of a finished search only, once its job succeeded', () => {
    const r = run([trial('0', 0.5), trial('1', 0.9)], 'max', '1');
    const jobs = [job('hb-1-t0', 'succeeded'), job('hb-1-t1', 'succeeded')];
    expect(bestJob(r, jobs)).toBeNull(); // still running
    const done = { ...r, state: 'succeeded' };
    expect(bestJob(done, jobs)?.id).toBe('hb-1-t1');
    expect(bestJob(done, [job('hb-1-t1', 'running')])).toBeNull();
    expect(bestJob({ ...done, best: null }, jobs)).toBeNull();
  });

  it('plots better values higher, for max and for min, with the best so far as steps', () => {
    const up = objectivePlot(run([trial('0', 1), trial('1', 3), trial('2', 2)], 'max'), 100, 50, 0);
    expect(up?.points.map(p => [p.x, p.y])).toEqual([
      [0, 50],
      [20, 0],
      [40, 25]
    ]);
    expect(up?.bestLine).toBe('0.0,50.0 20.0,50.0 20.0,0.0 40.0,0.0');
    const down = objectivePlot(run([trial('0', 1), trial('1', 3)], 'min'), 100, 50, 0);
    expect(down?.points.map(p => p.y)).toEqual([0, 50]); // a smaller loss is higher
    expect(objectivePlot(run([trial('0', null, 'failed')]), 100, 50)).toBeNull();
    const one = objectivePlot(run([trial('0', 2)]), 100, 50, 0);
    expect(one?.points[0].y).toBe(25); // a single value sits in the middle
  });
});

describe('parseSearchEntry (the Tune… form)', () => {
  const ok = (text: string, type: string, unchanged = '0.01') => {
    const parsed = parseSearchEntry(text, type, unchanged);
    if (!parsed.ok) {
      throw new Error(parsed.error);
    }
    return parsed.value;
  };

  it('reads ranges, log scales, steps and lists in the types the notebook declares', () => {
    expect(ok('0.0001 .. 0.1 log', 'float')).toEqual({ min: 0.0001, max: 0.1, log: true });
    expect(ok('8..64 step 8', 'int', '32')).toEqual({ min: 8, max: 64, step: 8 });
    expect(ok('16, 32, 64', 'int', '32')).toEqual([16, 32, 64]);
    expect(ok('relu, tanh', 'str', 'relu')).toEqual(['relu', 'tanh']);
    expect(ok('True, False', 'bool', 'True')).toEqual([true, false]);
    expect(ok('0.5', 'float')).toEqual([0.5]); // one value other than the notebook's
  });

  it('leaves a parameter the user did not change (or emptied) as the notebook has it', () => {
    expect(ok('0.01', 'float')).toBeUndefined();
    expect(ok('  ', 'float')).toBeUndefined();
  });

  it('says what to write instead', () => {
    const bad = (text: string, type: string) => {
      const parsed = parseSearchEntry(text, type, 'x');
      return parsed.ok ? '' : parsed.error;
    };
    expect(bad('5 .. 1', 'float')).toContain('MIN < MAX');
    expect(bad('1 .. 5 step -1', 'int')).toContain('step is a number > 0');
    expect(bad('8, big', 'int')).toContain('"big" is not a whole number');
    expect(bad('8, big', 'int')).toContain('a range "MIN .. MAX"');
  });
});

describe('base models', () => {
  it('says size, preprocessing, licence and who added it', () => {
    const model = {
      name: 'mobilenet',
      input_size: [96, 96, 3],
      preprocessing: 'scale_-1_1',
      licence: 'Apache-2.0',
      source: 'keras.applications',
      private: false,
      added_by: 'ana',
      format: 'keras'
    };
    expect(baseModelDetails(model)).toBe('96×96×3 · scale_-1_1 · Apache-2.0 · added by ana');
  });
});

describe('train a model', () => {
  const project = (task: string, labeled: number) => ({
    id: 1,
    name: 'pets',
    task,
    labeled,
    total: 50,
    url: ''
  });
  it('offers it for classification projects with a few labels', () => {
    expect(trainable(project('image-classification', 4))).toBe(true);
    expect(trainable(project('text-classification', 10))).toBe(true);
    expect(trainable(project('image-classification', 3))).toBe(false);
    expect(trainable(project('object-detection', 40))).toBe(false);
  });
  it('finds the classify run a tuning run belongs to', () => {
    const runs = [
      {
        name: 'pets-1',
        project: 'pets',
        kind: 'image',
        classes: ['cat', 'dog'],
        tuning: 't-2',
        state: 'running',
        best_objective: null
      }
    ];
    expect(classificationOf({ id: 't-2' }, runs)?.name).toBe('pets-1');
    expect(classificationOf({ id: 't-3' }, runs)).toBeNull();
    expect(classificationOf({ id: 't-2' }, null)).toBeNull();
  });
});

describe('schedules', () => {
  const schedule: ISchedule = {
    id: 's-1a2b3c4d',
    name: 'nightly',
    owner: 'sam',
    cron: '0 2 * * *',
    timezone: 'Europe/Berlin',
    description: 'every day at 02:00',
    paused: false,
    params: {},
    next: [{ time: '2026-12-07T02:00:00+01:00', words: 'Mon 7 Dec 2026, 02:00 CET (in 5 hours)' }],
    runs: []
  };

  it('says when it runs next, or that it is paused', () => {
    expect(scheduleSummary(schedule)).toBe(
      'every day at 02:00 (Europe/Berlin) · next Mon 7 Dec 2026, 02:00 CET (in 5 hours)'
    );
    expect(scheduleSummary({ ...schedule, paused: true, next: [] })).toBe(
      'every day at 02:00 (Europe/Berlin) · paused'
    );
  });

  it('gives a run its duration once it ended', () => {
    const run = { number: 3, due: '', state: 'running', job: 's-1a2b3c4d-r3', started: 100 };
    expect(runText(run)).toBe('run 3');
    expect(runText({ ...run, state: 'succeeded', ended: 141.6 })).toBe('run 3 · 42 s');
  });

  it('knows a scheduled run by its job id, and where the Lab opens its notebook', () => {
    expect(scheduledRun(job('s-1a2b3c4d-r12', 'failed'))).toEqual({
      schedule: 's-1a2b3c4d',
      run: 12
    });
    expect(scheduledRun(job('train-20261206-ab12', 'failed'))).toBeNull();
    expect(scheduledRun(job('s-1a2b3c4d-r12x', 'failed'))).toBeNull();
    expect(jobFileLabPath('/srv/data/users/sam/jobs/s-1a2b3c4d-r1/executed.ipynb')).toBe(
      'hdfs/users/sam/jobs/s-1a2b3c4d-r1/executed.ipynb'
    );
    expect(jobFileLabPath('/srv/elsewhere/executed.ipynb')).toBeNull();
    expect(jobFileLabPath(null)).toBeNull();
  });
});

describe('endpoint traffic', () => {
  const step = (t: number, requests: number, p99: number | null) => ({
    t,
    requests,
    rps: requests / 10,
    errors: 0,
    error_rate: 0,
    p50_ms: p99 === null ? null : p99 / 2,
    p90_ms: p99,
    p99_ms: p99
  });

  it('draws each key on one scale and breaks the line where a step has no value', () => {
    const series = [step(0, 10, 20), step(10, 0, null), step(20, 20, 40)];
    const drawn = seriesLines(series, ['p50_ms', 'p99_ms'], 100, 50, 0)!;
    expect(drawn.max).toBe(40);
    expect(drawn.lines.p99_ms).toEqual(['0.0,25.0', '100.0,0.0']);
    expect(drawn.lines.p50_ms).toEqual(['0.0,37.5', '100.0,25.0']);
    const rps = seriesLines(series, ['rps'], 100, 50, 0)!;
    expect(rps.lines.rps).toEqual(['0.0,25.0 50.0,50.0 100.0,0.0']);
    expect(seriesLines([step(0, 0, null)], ['p99_ms'], 100, 50)).toBeNull();
  });

  it('says the totals in one line', () => {
    const totals = { ...step(0, 983, 24), rps: 0.273, errors: 2, error_rate: 0.002 };
    const traffic = {
      name: 'clf',
      window_s: 3600,
      step_s: 60,
      totals: { ...totals, by_status: {}, by_version: {} },
      series: []
    };
    expect(trafficSummary(traffic)).toBe(
      '983 requests in 1 h (0.27/s) · 2 errors (0.2%) · p50 12 ms · p99 24 ms'
    );
    const batched = { ...traffic, totals: { ...traffic.totals, batch_size: 3.14159 } };
    expect(trafficSummary(batched)).toMatch(/p99 24 ms · 3.14 rows per model call$/);
  });
});

describe('canary rollouts', () => {
  it('says how far a rollout is, or how it ended', () => {
    const running = {
      state: 'running' as const,
      stable: 2,
      canary: 3,
      percent: 10,
      reason: '',
      history: [{ time: 1, event: 'version 3 gets 10%' }]
    };
    expect(rolloutText(running)).toBe('canary: version 3 gets 10% (version 2 the rest)');
    const back = {
      ...running,
      state: 'rolled_back' as const,
      history: [...running.history, { time: 2, event: 'rolled back to version 2: p99' }]
    };
    expect(rolloutText(back)).toBe('canary: rolled back to version 2: p99');
    expect(rolloutText(null)).toBeNull();
  });
});

describe('endpoint copies', () => {
  it('says how many copies serve, and nothing for one', () => {
    const ep = { name: 'ep', url: '/u', running: true, versions: [1] };
    expect(copiesText(ep)).toBeNull();
    expect(copiesText({ ...ep, replicas: { min: 1, max: 1 }, ready: 1 })).toBeNull();
    expect(copiesText({ ...ep, replicas: { min: 3, max: 3 }, ready: 2 })).toBe(
      '3 copies (2 serving)'
    );
    expect(copiesText({ ...ep, replicas: { min: 1, max: 4 }, ready: 1 })).toBe(
      '1–4 copies, scaled (1 serving)'
    );
  });
});

describe('drift alerts', () => {
  it('says which feature drifted while the alert is on', () => {
    const ep = { name: 'ep', url: '/u', running: true, versions: [1] };
    expect(driftText(ep)).toBeNull();
    const check = { drifted: false, psi_max: 0.05, worst_feature: 0, threshold: 0.2, rows: 120 };
    expect(driftText({ ...ep, request_log: { rate: 1, drift: check } })).toBeNull();
    const drifted = { ...check, drifted: true, psi_max: 0.83, worst_feature: 1 };
    expect(driftText({ ...ep, request_log: { rate: 1, drift: drifted } })).toBe(
      'inputs drifted: feature 1 (PSI 0.83 over 0.2, 120 calls)'
    );
  });
});

describe('optimizations for phones', () => {
  const variant = (name: string, gz: number, accuracy: number | null, ok = true) => ({
    name,
    size_bytes: gz * 2,
    size_gzip_bytes: gz,
    accuracy,
    latency_ms: 0.01,
    parity: ok,
    within_budget: true
  });
  const done: IOptimization = {
    job: 'optimize-train-1',
    name: 'optimize-train-1',
    state: 'succeeded',
    created: 1,
    origin: { job: 'train-1' },
    variants: ['float', 'pruned-int8'],
    folder: '/u/jobs/optimize-train-1/mobile',
    progress: null,
    report: {
      rows: [],
      variants: [variant('float', 1000, 99.4), variant('pruned-int8', 200, 99.0)],
      chosen: 'pruned-int8',
      baseline_accuracy: 99.4,
      samples: 180,
      summary: '',
      plot: '/u/jobs/optimize-train-1/mobile/accuracy-vs-size.png'
    }
  };

  it('tells optimization jobs by their script folder', () => {
    const job = { id: 'a', state: 'running', created: 0, restarts: 0, replicas: {} };
    expect(isOptimizationJob({ ...job, spec: { source: '/home/u/.hubforge/optimize/o.py' } })).toBe(
      true
    );
    expect(isOptimizationJob({ ...job, spec: { source: '/home/u/train.ipynb' } })).toBe(false);
    expect(isOptimizationJob({ ...job, spec: {} })).toBe(false);
  });

  it('names what was optimized and says what was chosen', () => {
    expect(optimizationTitle(done)).toBe('model of job train-1');
    expect(optimizationTitle({ ...done, origin: { endpoint: 'digits' } })).toBe('endpoint digits');
    expect(chosenText(done)).toBe(
      'chosen: pruned-int8, 5.0x smaller (gzipped), accuracy 99.0 (SavedModel 99.4)'
    );
    const none = { ...done, report: { ...done.report!, chosen: null } };
    expect(chosenText(none)).toMatch(/^none chosen/);
    expect(chosenText({ ...done, report: null })).toBeNull();
  });

  it('plots smaller to the left and more accurate up, the chosen one marked', () => {
    const points = mobilePlot(done.report!.variants, 'pruned-int8', 200, 100, 10);
    const [float, pruned] = points;
    expect(pruned.x).toBeLessThan(float.x);
    expect(float.y).toBeLessThan(pruned.y); // (SVG's y grows downwards)
    expect(points.map(p => p.chosen)).toEqual([false, true]);
    for (const p of points) {
      expect(p.x).toBeGreaterThanOrEqual(10);
      expect(p.x).toBeLessThanOrEqual(190);
    }
    expect(mobilePlot([variant('float', 10, null)], null, 200, 100)).toEqual([]);
  });
});
