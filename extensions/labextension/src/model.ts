/**
 * The panel's state, kept free of JupyterLab so that it can be tested alone: what the REST
 * API returns, how a job is summarised, which changes deserve a notification, and how often
 * to poll.
 */

export interface IReplica {
  state: string;
  exit_code?: number | null;
}

export interface IProgress {
  epoch?: number | null;
  epochs?: number | null;
  step?: number | null;
  steps?: number | null;
  eta_s?: number | null;
  [key: string]: unknown;
}

export interface IJob {
  id: string;
  state: string;
  reason?: string;
  created: number;
  restarts: number;
  replicas: Record<string, IReplica>;
  spec: { name?: string; workers?: number; source?: string; [key: string]: unknown };
  progress?: IProgress | null;
  artifacts?: { figures?: string[]; model_dir?: string; [key: string]: unknown };
  /** While the job waits in the workbench's queue: its place (1 = next) and why. */
  queue?: { position: number; reason: string };
}

export interface ITensorBoard {
  name: string;
  url: string;
  logdirs: Record<string, string>;
  started: number;
}

export interface IEndpoint {
  name: string;
  url: string;
  public_url?: string;
  running: boolean;
  versions: number[];
  labels?: Record<string, number>;
  /** Kubernetes with Kueue: where its pods wait for quota (absent once admitted). */
  queue?: { position: number | null; reason: string };
  /** The last canary rollout (absent or null without one). */
  rollout?: IRollout | null;
  /** How many copies serve it: a number (min = max) or a range scaled on the load. */
  replicas?: { min: number; max: number } | null;
  /** Copies serving now. */
  ready?: number;
  /** Sampled calls and the service's last drift check (null: not logging). */
  request_log?: { rate: number; drift?: IDriftCheck | null } | null;
}

export interface IDriftCheck {
  drifted: boolean;
  psi_max: number;
  worst_feature: number | null;
  threshold: number;
  rows: number;
}

/** "inputs drifted: feature 1 (PSI 0.83 over 0.2, 2000 calls)" while the alert is on. */
export function driftText(endpoint: IEndpoint): string | null {
  const drift = endpoint.request_log?.drift;
  if (!drift || !drift.drifted) {
    return null;
  }
  return (
    `inputs drifted: feature ${drift.worst_feature} (PSI ${drift.psi_max} over ` +
    `${drift.threshold}, ${drift.rows} calls)`
  );
}

/** "3 copies (2 serving)", "1-4 copies, scaled (2 serving)"; null for one copy. */
export function copiesText(endpoint: IEndpoint): string | null {
  const replicas = endpoint.replicas;
  if (!replicas || replicas.max <= 1) {
    return null;
  }
  const wanted =
    replicas.min === replicas.max
      ? `${replicas.min} copies`
      : `${replicas.min}–${replicas.max} copies, scaled`;
  return `${wanted} (${endpoint.ready ?? 0} serving)`;
}

export interface IRollout {
  state: 'running' | 'promoted' | 'rolled_back';
  stable: number;
  canary: number;
  percent: number;
  reason: string;
  history: { time: number; event: string }[];
}

/** "canary: version 3 gets 10% (version 2 the rest)" or how the rollout ended. */
export function rolloutText(rollout: IRollout | null | undefined): string | null {
  if (!rollout) {
    return null;
  }
  if (rollout.state === 'running') {
    return (
      `canary: version ${rollout.canary} gets ${rollout.percent}% ` +
      `(version ${rollout.stable} the rest)`
    );
  }
  const last = rollout.history[rollout.history.length - 1];
  return `canary: ${last ? last.event : rollout.state}`;
}

export interface IProject {
  id: number;
  name: string;
  task: string;
  labeled: number;
  total: number;
  url: string;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'damaged']);

/** A classifier run (hubforge.automl.classify) of a labeling project; its search is a tuning run of the same name. */
export interface IClassification {
  name: string;
  project: string;
  kind: string;
  classes: string[];
  tuning: string;
  state: string;
  best_objective: number | null;
}

/** Whether "Train a model" can start on this project: a classification with two labeled items of some class. */
export function trainable(project: IProject): boolean {
  return /(image|text)-classification/.test(project.task) && project.labeled >= 4;
}

/** The classify run a tuning run belongs to, if any. */
export function classificationOf(
  run: { id: string },
  runs: IClassification[] | null
): IClassification | null {
  return (runs || []).find(c => c.tuning === run.id) || null;
}

/** The CSS modifier of a state badge: one of four colours a user learns once. */
export function badgeKind(state: string): 'ok' | 'bad' | 'busy' | 'idle' {
  if (state === 'succeeded' || state === 'running') {
    return state === 'succeeded' ? 'ok' : 'busy';
  }
  if (state === 'failed' || state === 'damaged') {
    return 'bad';
  }
  return 'idle';
}

/** "2 s", "4 min", "3 h", "2 d": how long ago, or how long, in one short word. */
export function shortDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h`;
  }
  return `${Math.round(s / 86400)} d`;
}

/** "epoch 2/5 · step 40/100 · ETA 3 min", or '' before the first training step. */
export function progressText(job: IJob): string {
  const p = job.progress;
  if (!p) {
    return '';
  }
  const parts: string[] = [];
  if (p.epoch !== null && p.epoch !== undefined) {
    // Keras counts epochs from 0; people count from 1
    parts.push(p.epochs ? `epoch ${p.epoch + 1}/${p.epochs}` : `epoch ${p.epoch + 1}`);
  }
  if (p.step !== null && p.step !== undefined) {
    parts.push(p.steps ? `step ${p.step}/${p.steps}` : `step ${p.step}`);
  }
  if (!TERMINAL.has(job.state) && p.eta_s !== null && p.eta_s !== undefined) {
    parts.push(`ETA ${shortDuration(p.eta_s)}`);
  }
  return parts.join(' · ');
}

/** "#2 in the queue: waiting for 1 GPU (0 free); 1 job ahead, of ana", or '' once it runs. */
export function queueText(job: IJob): string {
  if (job.state !== 'queued' || !job.queue) {
    return '';
  }
  return `#${job.queue.position} in the queue: ${job.queue.reason}`;
}

/** Where an endpoint Kueue holds waits ('' when it is up or not held). */
export function endpointQueueText(endpoint: IEndpoint): string {
  if (endpoint.running || !endpoint.queue) {
    return '';
  }
  const place = endpoint.queue.position ? `#${endpoint.queue.position} in the queue: ` : '';
  return `${place}${endpoint.queue.reason}`;
}

/** Fraction done in [0, 1], or null when the job has not said. */
export function progressFraction(job: IJob): number | null {
  const p = job.progress;
  if (job.state === 'succeeded') {
    return 1;
  }
  if (!p) {
    return null;
  }
  if (p.epochs && p.epoch !== null && p.epoch !== undefined) {
    const inEpoch = p.steps && p.step ? Math.min(p.step / p.steps, 1) : 0;
    return Math.min((p.epoch + inEpoch) / p.epochs, 1);
  }
  if (p.steps && p.step !== null && p.step !== undefined) {
    return Math.min(p.step / p.steps, 1);
  }
  return null;
}

export function jobName(job: IJob): string {
  return job.spec?.name || job.id;
}

/** One line under a job's name: workers, age, restarts, and the reason when it failed. */
export function jobDetails(job: IJob, now: number): string {
  const workers = job.spec?.workers ?? Object.keys(job.replicas || {}).length;
  const parts = [
    `${workers} worker${workers === 1 ? '' : 's'}`,
    `${shortDuration(now - job.created)} ago`
  ];
  if (job.restarts > 0) {
    parts.push(`${job.restarts} restart${job.restarts === 1 ? '' : 's'}`);
  }
  return parts.join(' · ');
}

export interface IJobChange {
  job: IJob;
  from: string;
}

/**
 * Jobs that reached an end state since the previous listing: those a notification is for.
 * A job seen for the first time already finished is not news (the panel just opened).
 */
export function endedSince(previous: IJob[] | null, current: IJob[]): IJobChange[] {
  if (previous === null) {
    return [];
  }
  const before = new Map(previous.map(j => [j.id, j.state]));
  const ended: IJobChange[] = [];
  for (const job of current) {
    const was = before.get(job.id);
    if (was !== undefined && !TERMINAL.has(was) && TERMINAL.has(job.state)) {
      ended.push({ job, from: was });
    }
  }
  return ended;
}

/**
 * Seconds left, from two sightings of the job's progress (the first one the panel saw and
 * the latest): the rate so far, carried to the end. Null until there is a rate.
 */
export function estimateEta(
  first: { time: number; fraction: number },
  latest: { time: number; fraction: number }
): number | null {
  const done = latest.fraction - first.fraction;
  const elapsed = latest.time - first.time;
  if (done <= 0 || elapsed <= 0 || latest.fraction >= 1) {
    return null;
  }
  return ((1 - latest.fraction) * elapsed) / done;
}

/** Whether two listings differ in anything the panel shows. */
export function changed(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) !== JSON.stringify(b);
}

/**
 * How long to wait before the next poll: the minimum while something runs or just changed,
 * doubling while nothing changes, longer still after errors; never beyond `max`.
 */
export class Backoff {
  constructor(
    readonly min = 1000,
    readonly max = 30000
  ) {
    this._delay = min;
  }

  get delay(): number {
    return this._delay;
  }

  /** After a poll: `changed` resets to the minimum, `busy` (something running) caps growth. */
  next(result: { changed: boolean; busy: boolean; failed?: boolean }): number {
    if (result.failed) {
      this._delay = Math.min(Math.max(this._delay * 2, this.min * 4), this.max);
    } else if (result.changed) {
      this._delay = this.min;
    } else {
      // while a job of yours runs its state changes are what you wait for: stay at the minimum
      const cap = result.busy ? this.min : this.max;
      this._delay = Math.min(this._delay * 2, cap);
    }
    return this._delay;
  }

  reset(): void {
    this._delay = this.min;
  }

  private _delay: number;
}

/** The counts the status bar shows. */
export interface IGpuStatus {
  workbench: { total: number; free: number } | null;
  /** This server's devices. */
  visible?: string[];
  /** GPUs the team's queued jobs wait for, and how long a GPU server may then idle. */
  waiting_for_gpus?: { gpus: number; idle_limit_s: number } | null;
}

export function statusText(jobs: IJob[], gpus: IGpuStatus | null): string {
  const running = jobs.filter(j => !TERMINAL.has(j.state)).length;
  const parts = [`${running} job${running === 1 ? '' : 's'} running`];
  const wb = gpus?.workbench;
  if (wb && typeof wb.total === 'number' && wb.total > 0) {
    parts.unshift(`GPUs ${wb.total - wb.free}/${wb.total} in use`);
  }
  const warning = idleGpuWarning(gpus);
  if (warning) {
    parts.push(warning);
  }
  return parts.join(' · ');
}

/**
 * What a server holding GPUs is told while jobs wait for GPUs: it stops sooner when idle
 * (a running cell counts as activity); '' when that does not apply.
 */
export function idleGpuWarning(gpus: IGpuStatus | null): string {
  const waiting = gpus?.waiting_for_gpus;
  if (!waiting || !waiting.gpus || !waiting.idle_limit_s || !gpus?.visible?.length) {
    return '';
  }
  const plural = waiting.gpus === 1 ? '' : 's';
  return (
    `jobs wait for ${waiting.gpus} GPU${plural}: this server stops after ` +
    `${shortDuration(waiting.idle_limit_s)} without activity`
  );
}

/** Parameters typed in the Run-as-job dialog, back to the types the notebook declares. */
export function parseParameter(
  value: string,
  type: string
): { ok: true; value: unknown } | { ok: false; error: string } {
  const text = value.trim();
  switch (type) {
    case 'int':
      return /^[-+]?\d+$/.test(text)
        ? { ok: true, value: parseInt(text, 10) }
        : { ok: false, error: `"${value}" is not a whole number` };
    case 'float':
      return text !== '' && !isNaN(Number(text))
        ? { ok: true, value: Number(text) }
        : { ok: false, error: `"${value}" is not a number` };
    case 'bool':
      if (/^(true|false)$/i.test(text)) {
        return { ok: true, value: text.toLowerCase() === 'true' };
      }
      return { ok: false, error: `"${value}" is not True or False` };
    case 'str':
      return { ok: true, value };
    default:
      try {
        return { ok: true, value: JSON.parse(text) };
      } catch {
        return { ok: false, error: `"${value}" is not valid JSON (a list or dict)` };
      }
  }
}

/** A request kept for an endpoint (GET/POST /hubforge/api/endpoints/<name>/requests). */
export interface ISavedRequest {
  name: string;
  request: { instances: unknown[] };
  saved: number;
}

/**
 * What is wrong with saving the Try-it text as `name` (null: nothing), in the words the
 * dialog shows; the server checks the same again.
 */
export function savedRequestProblem(name: string, text: string): string | null {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 60) {
    return 'Name the request (1 to 60 characters), e.g. "two cats"';
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return 'The request is not valid JSON; e.g. {"instances": [[1.0, 2.0]]}';
  }
  if (typeof body !== 'object' || body === null || !Array.isArray((body as any).instances)) {
    return 'Save a predict body: {"instances": [...]}';
  }
  return null;
}

/** One trial of a tuning run (GET /hubforge/api/tunings). */
export interface ITrial {
  id: string;
  job: string;
  params: Record<string, unknown>;
  state: string;
  objective: number | null;
  message?: string;
  /** Hyperband: the trial's epochs and the trial it takes further (null: a new one). */
  schedule?: { epochs: number; bracket: number; round: number; continues: string | null };
}

/** A tuning run: a search over a notebook's parameters, every trial a job. */
export interface ITuning {
  id: string;
  name: string;
  state: string;
  reason?: string;
  created: number;
  algorithm: string;
  objective: { name: string; direction: 'max' | 'min' };
  max_trials: number;
  parallel: number;
  trials: ITrial[];
  best: string | null;
}

/** "4/6 trials done · 2 at a time · hyperband · max val_accuracy" */
export function tuningSummary(run: ITuning): string {
  const done = run.trials.filter(t => TERMINAL.has(t.state)).length;
  const goal = `${run.objective.direction} ${run.objective.name}`;
  return `${done}/${run.max_trials} trials done · ${run.parallel} at a time · ${run.algorithm} · ${goal}`;
}

/** A trial's parameters as the notebook would read them: "lr=0.01, units=32". */
export function paramsText(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([name, value]) => {
      const shown = typeof value === 'number' ? Number(value.toPrecision(4)) : value;
      return `${name}=${typeof shown === 'string' ? shown : JSON.stringify(shown)}`;
    })
    .join(', ');
}

/** "Best: trial 3, val_accuracy 0.912 (lr=0.01, units=32)", or null before any result. */
export function bestText(run: ITuning): string | null {
  const best = run.trials.find(t => t.id === run.best);
  if (!best || best.objective === null) {
    return null;
  }
  const value = Number(best.objective.toPrecision(4));
  return `Best: trial ${best.id}, ${run.objective.name} ${value} (${paramsText(best.params)})`;
}

/** The jobs that are trials of these runs: the sidebar shows them in their run, not twice. */
export function trialJobIds(runs: ITuning[] | null): Set<string> {
  return new Set((runs || []).flatMap(r => r.trials.map(t => t.job)));
}

export interface IPlotPoint {
  x: number;
  y: number;
  trial: string;
  value: number;
  best: boolean;
}

/**
 * The objective of each trial that gave one, in the order the trials started, scaled into a
 * `width` x `height` box (better values higher), and the best-so-far as a step line.
 */
export function objectivePlot(
  run: ITuning,
  width: number,
  height: number,
  pad = 4
): { points: IPlotPoint[]; bestLine: string; min: number; max: number } | null {
  const scored = run.trials
    .map((t, index) => ({ t, index }))
    .filter(({ t }) => t.objective !== null && Number.isFinite(t.objective));
  if (!scored.length) {
    return null;
  }
  const values = scored.map(({ t }) => t.objective as number);
  const min = Math.min(...values);
  const max = Math.max(...values);
  const up = run.objective.direction === 'max';
  const span = max - min || 1;
  const count = Math.max(run.max_trials, run.trials.length, 2);
  const x = (index: number) => pad + (index * (width - 2 * pad)) / (count - 1);
  const y = (value: number) => {
    const high = up ? (value - min) / span : (max - value) / span;
    return height - pad - (max === min ? 0.5 : high) * (height - 2 * pad);
  };
  const points = scored.map(({ t, index }) => ({
    x: x(index),
    y: y(t.objective as number),
    trial: t.id,
    value: t.objective as number,
    best: t.id === run.best
  }));
  let best: number | null = null;
  const steps: string[] = [];
  for (const p of points) {
    if (best === null || (up ? p.value > best : p.value < best)) {
      if (best !== null) {
        steps.push(`${p.x.toFixed(1)},${y(best).toFixed(1)}`);
      }
      best = p.value;
    }
    steps.push(`${p.x.toFixed(1)},${y(best).toFixed(1)}`);
  }
  return { points, bestLine: steps.join(' '), min, max };
}

/** The job of a finished search's best trial, once it succeeded (what "Deploy best" deploys). */
export function bestJob(run: ITuning, jobs: IJob[]): IJob | null {
  const best = run.trials.find(t => t.id === run.best);
  const job = best ? jobs.find(j => j.id === best.job) : undefined;
  return run.state === 'succeeded' && job && job.state === 'succeeded' ? job : null;
}

/**
 * What the Tune… form's text for one parameter searches (the `space` entry of
 * POST /hubforge/api/tunings), or undefined when it is left as the notebook has it:
 * "0.0001 .. 0.1 log" (a range, log scale), "8 .. 64 step 8" (ints: both ends whole),
 * "16, 32, 64" or "relu, tanh" (a choice), one value other than the notebook's (a choice
 * of one).
 */
export function parseSearchEntry(
  text: string,
  type: string,
  unchanged: string
): { ok: true; value: unknown } | { ok: false; error: string } {
  const trimmed = text.trim();
  if (trimmed === unchanged.trim() || trimmed === '') {
    return { ok: true, value: undefined };
  }
  const range = trimmed.match(/^(\S+)\s*\.\.\s*(\S+)((?:\s+(?:log|step\s+\S+))*)$/);
  if (range && (type === 'int' || type === 'float')) {
    const [low, high] = [Number(range[1]), Number(range[2])];
    if (!Number.isFinite(low) || !Number.isFinite(high) || !(low < high)) {
      return { ok: false, error: `"${text}": a range is "MIN .. MAX" with numbers, MIN < MAX` };
    }
    const entry: Record<string, unknown> = { min: low, max: high };
    if (/\blog\b/.test(range[3])) {
      entry.log = true;
    }
    const step = range[3].match(/step\s+(\S+)/);
    if (step) {
      entry.step = Number(step[1]);
      if (!(Number(step[1]) > 0)) {
        return { ok: false, error: `"${text}": the step is a number > 0` };
      }
    }
    return { ok: true, value: entry };
  }
  const values: unknown[] = [];
  for (const part of trimmed.split(',')) {
    const parsed = parseParameter(part.trim(), type);
    if (!parsed.ok) {
      return { ok: false, error: `${parsed.error}; a list is "A, B, C", a range "MIN .. MAX"` };
    }
    values.push(parsed.value);
  }
  return { ok: true, value: values };
}

/** A model of the team's base-model store (GET /hubforge/api/base-models). */
export interface IBaseModel {
  name: string;
  input_size: number[];
  preprocessing: string;
  licence: string;
  source: string;
  private: boolean;
  added_by: string;
  format: string;
}

/** "96×96×3 · scale_-1_1 · Apache-2.0 · added by ana" */
export function baseModelDetails(model: IBaseModel): string {
  const size = (model.input_size || []).join('×');
  return `${size} · ${model.preprocessing} · ${model.licence} · added by ${model.added_by}`;
}

/** One run of a schedule (GET /hubforge/api/schedules). */
export interface IScheduleRun {
  number: number;
  due: string;
  state: string;
  job: string;
  reason?: string;
  started?: number;
  ended?: number;
  executed_notebook?: string | null;
  /** The executed notebook as JupyterLab opens it (hdfs/users/<you>/jobs/...). */
  lab_path?: string | null;
}

/** A notebook the workbench runs at the times of a cron expression (hubforge.schedules). */
export interface ISchedule {
  id: string;
  name: string;
  owner: string;
  cron: string;
  timezone: string;
  description: string;
  paused: boolean;
  path?: string;
  params: Record<string, unknown>;
  next: { time: string; words: string }[];
  runs: IScheduleRun[];
}

/** "every day at 02:00 (Europe/Berlin) · next Mon 7 Dec 2026, 02:00 CET (in 5 hours)" */
export function scheduleSummary(schedule: ISchedule): string {
  const when = `${schedule.description} (${schedule.timezone})`;
  if (schedule.paused) {
    return `${when} · paused`;
  }
  return schedule.next.length ? `${when} · next ${schedule.next[0].words}` : when;
}

/** "run 3 · 42 s" (with the duration once it ended). */
export function runText(run: IScheduleRun): string {
  const took =
    run.started && run.ended ? ` · ${Math.max(0, Math.round(run.ended - run.started))} s` : '';
  return `run ${run.number}${took}`;
}

const SCHEDULED_JOB = /^(s-[a-z0-9]{8})-r(\d+)$/;

/** The schedule and run number of a scheduled run's job, or null for any other job. */
export function scheduledRun(job: IJob): { schedule: string; run: number } | null {
  const match = SCHEDULED_JOB.exec(job.id);
  return match ? { schedule: match[1], run: Number(match[2]) } : null;
}

/** Where JupyterLab opens a file of the user's jobs: the path from ~/hdfs/users/<you>/jobs/. */
export function jobFileLabPath(path: string | null | undefined): string | null {
  const match = path ? /\/users\/[^/]+\/jobs\/.+$/.exec(path) : null;
  return match ? `hdfs${match[0]}` : null;
}

/** One step of an endpoint's traffic (GET endpoints/<name>/traffic). */
export interface ITrafficStep {
  t: number;
  requests: number;
  rps: number;
  errors: number;
  error_rate: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  /** Model calls the endpoint's processes made, and their mean rows (null: none counted). */
  model_calls?: number;
  batch_size?: number | null;
}

export interface ITraffic {
  name: string;
  window_s: number;
  step_s: number;
  totals: ITrafficStep & { by_status: Record<string, number>; by_version: Record<string, number> };
  series: ITrafficStep[];
}

/** Polylines of ``keys`` over the steps, on one scale from 0 to the largest value (gaps where
 * a step has none: a new line starts after them); null when no step has a value. */
export function seriesLines(
  series: ITrafficStep[],
  keys: (keyof ITrafficStep)[],
  width: number,
  height: number,
  pad = 4
): { lines: Record<string, string[]>; max: number } | null {
  const values = series.flatMap(s => keys.map(k => s[k])).filter(v => typeof v === 'number');
  if (!values.length) {
    return null;
  }
  const max = Math.max(...(values as number[])) || 1;
  const x = (i: number) => pad + (i * (width - 2 * pad)) / Math.max(series.length - 1, 1);
  const y = (v: number) => height - pad - (v / max) * (height - 2 * pad);
  const lines: Record<string, string[]> = {};
  for (const key of keys) {
    const parts: string[] = [];
    let current: string[] = [];
    series.forEach((s, i) => {
      const v = s[key];
      if (typeof v === 'number') {
        current.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      } else if (current.length) {
        parts.push(current.join(' '));
        current = [];
      }
    });
    if (current.length) {
      parts.push(current.join(' '));
    }
    lines[key] = parts;
  }
  return { lines, max };
}

/** "983 requests in 1 h (0.27/s) · 0 errors (0.0%) · p50 6.1 ms · p99 24 ms". */
export function trafficSummary(traffic: ITraffic): string {
  const t = traffic.totals;
  const ms = (v: number | null) => (v === null ? '–' : `${Number(v.toPrecision(3))} ms`);
  return (
    `${t.requests} requests in ${span(traffic.window_s)} (${Number(t.rps.toPrecision(2))}/s) · ` +
    `${t.errors} errors (${(t.error_rate * 100).toFixed(1)}%) · p50 ${ms(t.p50_ms)} · ` +
    `p99 ${ms(t.p99_ms)}` +
    (t.batch_size ? ` · ${Number(t.batch_size.toPrecision(3))} rows per model call` : '')
  );
}

function span(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['min', 60]
  ] as [string, number][]) {
    if (seconds >= size && seconds % size === 0) {
      return `${seconds / size} ${unit}`;
    }
  }
  return `${seconds} s`;
}

/** One variant of a model for phones, as report.json keeps it. */
export interface IMobileVariant {
  name: string;
  size_bytes: number;
  size_gzip_bytes: number;
  accuracy: number | null;
  latency_ms: number;
  parity: boolean;
  within_budget: boolean;
}

/** An optimization for phones (a job of its own) and, once done, its report. */
export interface IOptimization {
  job: string;
  name: string;
  state: string;
  reason?: string;
  created: number;
  origin: { job?: string; endpoint?: string; model?: string } | null;
  variants: string[] | null;
  folder: string;
  progress: { step: number; total: number; what: string } | null;
  report: {
    rows: Record<string, string>[];
    variants: IMobileVariant[];
    chosen: string | null;
    baseline_accuracy: number;
    samples: number;
    summary: string;
    plot: string;
  } | null;
  snippets?: Record<string, string>;
}

/** Whether a job is an optimization for phones (its script in ~/.hubforge/optimize/). */
export function isOptimizationJob(job: IJob): boolean {
  return /\/\.hubforge\/optimize\/[^/]+$/.test(job.spec?.source || '');
}

/** "the model of job train-1a2b", "endpoint digits", "model models/x". */
export function optimizationTitle(o: IOptimization): string {
  const origin = o.origin || {};
  if (origin.job) {
    return `model of job ${origin.job}`;
  }
  if (origin.endpoint) {
    return `endpoint ${origin.endpoint}`;
  }
  return origin.model ? `model ${origin.model}` : o.name;
}

/** "chosen: pruned-int8, 5.2x smaller (gzipped), accuracy 99.4 (float 99.4)". */
export function chosenText(o: IOptimization): string | null {
  const report = o.report;
  if (!report) {
    return null;
  }
  const chosen = report.variants.find(v => v.name === report.chosen);
  if (!chosen) {
    return 'none chosen: no variant passed parity within the accuracy budget';
  }
  const float = report.variants.find(v => v.name === 'float');
  const smaller = float ? `, ${(float.size_gzip_bytes / chosen.size_gzip_bytes).toFixed(1)}x smaller (gzipped)` : '';
  const accuracy = chosen.accuracy === null ? '' : `, accuracy ${chosen.accuracy.toFixed(1)}`;
  return `chosen: ${chosen.name}${smaller}${accuracy} (SavedModel ${report.baseline_accuracy.toFixed(1)})`;
}

export interface IMobilePoint {
  x: number;
  y: number;
  name: string;
  chosen: boolean;
  eligible: boolean;
}

/** Accuracy (up) against gzipped size (right, log scale) in a width x height box. */
export function mobilePlot(
  variants: IMobileVariant[],
  chosen: string | null,
  width: number,
  height: number,
  pad = 8
): IMobilePoint[] {
  const drawn = variants.filter(v => v.accuracy !== null && v.size_gzip_bytes > 0);
  if (!drawn.length) {
    return [];
  }
  const sizes = drawn.map(v => Math.log(v.size_gzip_bytes));
  const accs = drawn.map(v => v.accuracy as number);
  const [sx0, sx1] = [Math.min(...sizes), Math.max(...sizes)];
  const [ay0, ay1] = [Math.min(...accs), Math.max(...accs)];
  const scale = (v: number, lo: number, hi: number, span: number) =>
    hi > lo ? ((v - lo) / (hi - lo)) * span : span / 2;
  return drawn.map((v, i) => ({
    x: pad + scale(sizes[i], sx0, sx1, width - 2 * pad),
    y: height - pad - scale(accs[i], ay0, ay1, height - 2 * pad),
    name: v.name,
    chosen: v.name === chosen,
    eligible: v.parity && v.within_budget
  }));
}
