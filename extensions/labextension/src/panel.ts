/**
 * The Hubforge sidebar: jobs, TensorBoards, endpoints and labeling projects of this user,
 * kept up to date by polling with back-off (fast while a job runs, slow when nothing moves).
 */
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { request } from './api';
import { actionButton, h, svg } from './dom';
import {
  Backoff,
  IBaseModel,
  IEndpoint,
  IJob,
  IJobChange,
  IProject,
  ITensorBoard,
  ITuning,
  TERMINAL,
  badgeKind,
  baseModelDetails,
  bestJob,
  bestText,
  objectivePlot,
  paramsText,
  trialJobIds,
  tuningSummary,
  classificationOf,
  trainable,
  IClassification,
  ISchedule,
  IScheduleRun,
  runText,
  scheduleSummary,
  changed,
  endedSince,
  estimateEta,
  jobDetails,
  jobName,
  progressFraction,
  progressText,
  queueText,
  endpointQueueText,
  rolloutText,
  copiesText,
  driftText,
  IOptimization,
  chosenText,
  isOptimizationJob,
  mobilePlot,
  optimizationTitle
} from './model';

export interface IPanelActions {
  followLogs(job: IJob): void;
  cancel(job: IJob): Promise<void>;
  openTensorBoard(job: IJob): Promise<void>;
  deploy(job: IJob): Promise<void>;
  openNotebook(job: IJob): void;
  openFigure(path: string): void;
  showTensorBoard(tb: ITensorBoard): void;
  stopTensorBoard(tb: ITensorBoard): Promise<void>;
  tryEndpoint(endpoint: IEndpoint): Promise<void>;
  copyCurl(endpoint: IEndpoint): Promise<void>;
  monitor(endpoint: IEndpoint): void;
  rollback(endpoint: IEndpoint): Promise<void>;
  undeploy(endpoint: IEndpoint): Promise<void>;
  openLabeling(project: IProject): void;
  newLabelingNotebook(project: IProject): Promise<void>;
  cancelTuning(run: ITuning): Promise<void>;
  openTuningTensorBoard(run: ITuning): Promise<void>;
  trainModel(project: IProject): Promise<void>;
  openReport(run: IClassification): void;
  prelabel(run: IClassification): Promise<void>;
  pauseSchedule(schedule: ISchedule, paused: boolean): Promise<void>;
  updateSchedule(schedule: ISchedule): Promise<void>;
  deleteSchedule(schedule: ISchedule): Promise<void>;
  openExecuted(run: IScheduleRun): void;
  openRunTensorBoard(run: IScheduleRun): Promise<void>;
  optimize(source: { job?: string; endpoint?: string }, label: string): Promise<void>;
  showSnippets(o: IOptimization): Promise<void>;
}

interface ISnapshot {
  jobs: IJob[];
  tensorboards: ITensorBoard[];
  endpoints: IEndpoint[] | null;
  projects: IProject[] | null;
  tunings: ITuning[] | null;
  baseModels: IBaseModel[] | null;
  classifications: IClassification[] | null;
  schedules: ISchedule[] | null;
  optimizations: IOptimization[] | null;
}

/** Polls the REST API; the panel and the status bar listen to it. */
export class HubforgeModel {
  readonly changed = new Signal<this, ISnapshot>(this);
  readonly jobsEnded = new Signal<this, IJobChange[]>(this);
  readonly failed = new Signal<this, string | null>(this);
  snapshot: ISnapshot = {
    jobs: [],
    tensorboards: [],
    endpoints: null,
    projects: null,
    tunings: null,
    baseModels: null,
    classifications: null,
    schedules: null,
    optimizations: null
  };
  gpus: any = null;
  loaded = false;

  constructor(readonly backoff = new Backoff(1000, 30000)) {}

  start(): void {
    if (!this._timer && !this._stopped) {
      void this._tick();
    }
  }

  dispose(): void {
    this._stopped = true;
    if (this._timer) {
      clearTimeout(this._timer);
    }
  }

  /** Poll now (after an action, or when the panel is shown). */
  async refresh(all = true): Promise<void> {
    if (all) {
      this._slowDue = 0;
    }
    this.backoff.reset();
    if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    await this._tick();
  }

  private async _tick(): Promise<void> {
    if (this._polling) {
      return this._polling;
    }
    this._polling = this._poll();
    try {
      await this._polling;
    } finally {
      this._polling = null;
    }
  }

  private async _poll(): Promise<void> {
    let delay: number;
    try {
      const next = await this._fetch();
      const ended = endedSince(this.loaded ? this._previousJobs : null, next.jobs);
      const differs = changed(next, this.snapshot);
      this._previousJobs = next.jobs;
      this.snapshot = next;
      this.loaded = true;
      this.failed.emit(null);
      if (differs) {
        this.changed.emit(next);
      }
      if (ended.length) {
        this.jobsEnded.emit(ended);
      }
      const busy =
        next.jobs.some(j => !TERMINAL.has(j.state)) ||
        (next.tunings || []).some(t => t.state === 'running');
      delay = this.backoff.next({ changed: differs, busy });
    } catch (error) {
      this.failed.emit(String((error as Error).message || error));
      delay = this.backoff.next({ changed: false, busy: false, failed: true });
    }
    if (!this._stopped) {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this._tick();
      }, delay);
    }
  }

  private async _fetch(): Promise<ISnapshot> {
    const [jobs, tensorboards, tunings, schedules] = await Promise.all([
      request<{ jobs: IJob[] }>('jobs'),
      request<{ tensorboards: ITensorBoard[] }>('tensorboards'),
      request<{ tunings: ITuning[] }>('tunings').catch(() => null),
      request<{ schedules: ISchedule[] }>('schedules').catch(() => null)
    ]);
    const now = Date.now() / 1000;
    // progress of the jobs still running (one small file each), with an ETA from the rate
    await Promise.all(
      jobs.jobs
        .filter(j => !TERMINAL.has(j.state))
        .map(async job => {
          try {
            job.progress = await request(`jobs/${encodeURIComponent(job.id)}/progress`);
          } catch {
            job.progress = null;
          }
          const fraction = progressFraction(job);
          if (fraction !== null && job.progress) {
            const first = this._firstSeen.get(job.id) ?? { time: now, fraction };
            this._firstSeen.set(job.id, first);
            job.progress.eta_s = estimateEta(first, { time: now, fraction });
          }
        })
    );
    let { endpoints, projects, baseModels, classifications, optimizations } = this.snapshot;
    // optimizations for phones: when one of their jobs changed, or with the slow ones
    const states = (list: { job: string; state: string }[] | null) =>
      JSON.stringify((list || []).map(o => [o.job, o.state]).sort());
    const optimizationJobs = jobs.jobs
      .filter(isOptimizationJob)
      .map(j => ({ job: j.id, state: j.state }));
    const running = optimizationJobs.some(o => !TERMINAL.has(o.state));
    if (running || this._slowDue <= now || states(optimizationJobs) !== states(optimizations)) {
      const o = await request<{ optimizations: IOptimization[] }>('mobile').catch(() => null);
      optimizations = o ? o.optimizations : null;
    }
    // endpoints and labeling change only by the user's hand: polled less often
    if (this._slowDue <= now) {
      this._slowDue = now + 15;
      const [e, p, b, c] = await Promise.all([
        request<{ endpoints: IEndpoint[] }>('endpoints').catch(() => null),
        request<{ projects: IProject[] }>('labeling/projects').catch(() => null),
        request<{ base_models: IBaseModel[] }>('base-models').catch(() => null),
        request<{ classifications: IClassification[] }>('classifications').catch(() => null)
      ]);
      endpoints = e ? e.endpoints : null;
      projects = p ? p.projects : null;
      baseModels = b ? b.base_models : null;
      classifications = c ? c.classifications : null;
      this.gpus = await request('gpus').catch(() => null);
    }
    return {
      jobs: jobs.jobs,
      tensorboards: tensorboards.tensorboards,
      endpoints,
      projects,
      tunings: tunings ? tunings.tunings : null,
      baseModels,
      classifications,
      schedules: schedules ? schedules.schedules : null,
      optimizations
    };
  }

  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _polling: Promise<void> | null = null;
  private _stopped = false;
  private _slowDue = 0;
  private _previousJobs: IJob[] = [];
  private _firstSeen = new Map<string, { time: number; fraction: number }>();
}

function section(title: string, id: string, count: number | null, body: Node): HTMLElement {
  return h(
    'section',
    { className: 'hf-Section', 'aria-labelledby': `hf-${id}-title`, dataset: { section: id } },
    h(
      'h3',
      { className: 'hf-SectionTitle', id: `hf-${id}-title` },
      title,
      count !== null ? h('span', { className: 'hf-Count' }, String(count)) : null
    ),
    body
  );
}

function empty(text: string): HTMLElement {
  return h('p', { className: 'hf-Empty' }, text);
}

function badge(state: string): HTMLElement {
  return h('span', { className: `hf-Badge hf-Badge-${badgeKind(state)}` }, state);
}

function bar(fraction: number | null, label: string): HTMLElement | null {
  if (fraction === null) {
    return null;
  }
  const percent = Math.round(fraction * 100);
  return h(
    'div',
    {
      className: 'hf-Bar',
      role: 'progressbar',
      'aria-valuemin': '0',
      'aria-valuemax': '100',
      'aria-valuenow': String(percent),
      'aria-label': label
    },
    h('div', { className: 'hf-BarFill', style: `width: ${percent}%` })
  );
}


/** The objective of each trial (a dot; the best one ringed) and the best so far (a line). */
function plot(run: ITuning): Element | null {
  const [width, height] = [240, 72];
  const drawn = objectivePlot(run, width, height);
  if (!drawn) {
    return null;
  }
  const label =
    `${run.objective.name} of each trial, from ${Number(drawn.min.toPrecision(4))} ` +
    `to ${Number(drawn.max.toPrecision(4))}`;
  return svg(
    'svg',
    { class: 'hf-Plot', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label },
    svg('title', {}, document.createTextNode(label)),
    svg('polyline', { class: 'hf-PlotBest', points: drawn.bestLine, fill: 'none' }),
    ...drawn.points.map(p =>
      svg(
        'circle',
        {
          class: p.best ? 'hf-PlotDot hf-PlotDot-best' : 'hf-PlotDot',
          cx: p.x.toFixed(1),
          cy: p.y.toFixed(1),
          r: p.best ? 4 : 3,
          'data-trial': p.trial
        },
        svg('title', {}, document.createTextNode(`trial ${p.trial}: ${p.value}`))
      )
    )
  );
}

/** Variant, gzipped size, times smaller than float, accuracy and latency, one row each (the
 * chosen one bold, the verdict in each row's title and its mark). */
function mobileTable(o: IOptimization): HTMLElement | null {
  const rows = o.report?.rows || [];
  if (!rows.length) {
    return null;
  }
  const keys = ['variant', 'gzipped', 'vs float (gz)', 'accuracy', 'latency 1 thread'];
  const heads = ['variant', 'gzipped', '×', 'acc.', 'ms'];
  const cell = (r: Record<string, string>, k: string) =>
    k === 'latency 1 thread' ? r[k].replace(' ms', '') : k === 'gzipped' ? r[k].replace(' KiB', 'K') : r[k];
  const mark = (verdict: string) => (verdict === 'chosen' ? ' ✓' : verdict === 'ok' ? '' : ' ✗');
  return h(
    'div',
    { className: 'hf-TableScroll' },
    h(
      'table',
      { className: 'hf-Trials hf-Variants' },
      h('thead', {}, h('tr', {}, ...heads.map(k => h('th', {}, k)))),
      h(
        'tbody',
        {},
        ...rows.map(r =>
          h(
            'tr',
            {
              dataset: { variant: r.variant, verdict: r[''] },
              className: r[''] === 'chosen' ? 'hf-TrialBest' : '',
              title: `${r.variant}: ${r['']} (${r.size} raw, all threads ${r['all threads']}, ` +
                `peak memory ${r['peak memory']}, agreement ${r.agreement})`
            },
            ...keys.map(k => h('td', {}, k === 'variant' ? r[k] + mark(r['']) : cell(r, k)))
          )
        )
      )
    )
  );
}

/** Accuracy against gzipped size, a dot per variant (the chosen ringed, refused hollow). */
function mobileSvg(o: IOptimization): Element | null {
  const [width, height] = [240, 80];
  const report = o.report!;
  const points = mobilePlot(report.variants, report.chosen, width, height);
  if (!points.length) {
    return null;
  }
  const label = `accuracy against gzipped size of ${points.length} variants`;
  return svg(
    'svg',
    {
      class: 'hf-Plot hf-MobilePlot',
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': label
    },
    svg('title', {}, document.createTextNode(`${label} (left: smaller, up: more accurate)`)),
    ...points.map(p =>
      svg(
        'g',
        { 'data-variant': p.name },
        svg('circle', {
          class: p.chosen
            ? 'hf-PlotDot hf-PlotDot-best'
            : p.eligible
              ? 'hf-PlotDot'
              : 'hf-PlotDot hf-PlotDot-refused',
          cx: p.x.toFixed(1),
          cy: p.y.toFixed(1),
          r: p.chosen ? 4 : 3
        }),
        svg(
          'text',
          {
            class: 'hf-PlotLabel',
            // names read inwards: right of the dots on the left half, left of the others
            x: (p.x < width / 2 ? p.x + 5 : p.x - 5).toFixed(1),
            y: (p.y + 3).toFixed(1),
            'text-anchor': p.x < width / 2 ? 'start' : 'end'
          },
          document.createTextNode(p.name)
        ),
        svg('title', {}, document.createTextNode(p.name))
      )
    )
  );
}

/** Trial, parameters, objective and state, one row per trial. */
function trialTable(run: ITuning): HTMLElement | null {
  if (!run.trials.length) {
    return null;
  }
  const value = (v: number | null) => (v === null ? '' : String(Number(v.toPrecision(4))));
  return h(
    'table',
    { className: 'hf-Trials' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, '#'),
        h('th', {}, 'parameters'),
        h('th', {}, run.objective.name),
        h('th', {}, 'state')
      )
    ),
    h(
      'tbody',
      {},
      ...run.trials.map(t =>
        h(
          'tr',
          {
            dataset: { trial: t.id, state: t.state },
            className: t.id === run.best ? 'hf-TrialBest' : '',
            title: t.state === 'failed' ? t.message || '' : t.job
          },
          h('td', {}, t.id),
          h(
            'td',
            {},
            paramsText(t.params) +
              (t.schedule?.continues ? ` (trial ${t.schedule.continues} further)` : '')
          ),
          h('td', {}, value(t.objective)),
          h('td', {}, badge(t.state))
        )
      )
    )
  );
}

export class HubforgePanel extends Widget {
  constructor(
    readonly model: HubforgeModel,
    readonly actions: IPanelActions
  ) {
    super();
    this.id = 'hubforge-panel';
    this.addClass('hf-Panel');
    this.title.caption = 'Hubforge: jobs, TensorBoards, endpoints, labeling';
    this._error = h('div', { className: 'hf-Error', role: 'alert' });
    this._content = h('div', { className: 'hf-Content' });
    this.node.append(
      h('header', { className: 'hf-Header' }, h('h2', {}, 'Hubforge')),
      this._error,
      this._content
    );
    this._content.append(empty('Loading your jobs, TensorBoards, endpoints and projects…'));
    model.changed.connect(() => this.render());
    model.failed.connect((_, message) => {
      this._error.textContent = message
        ? `Could not reach your server (${message}); retrying…`
        : '';
    });
    // ages ("3 min ago") move even when nothing else does
    this._clock = setInterval(() => this.model.loaded && this.render(), 30000);
  }

  dispose(): void {
    clearInterval(this._clock);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.model.refresh();
  }

  render(): void {
    const { tensorboards, endpoints, projects, tunings, baseModels, schedules } =
      this.model.snapshot;
    const trials = trialJobIds(tunings);
    const optimizations = this.model.snapshot.optimizations;
    // trials are shown with their tuning run, optimizations for phones in their own section
    const jobs = this.model.snapshot.jobs.filter(j => !trials.has(j.id) && !isOptimizationJob(j));
    const now = Date.now() / 1000;
    const focused = document.activeElement?.getAttribute('data-key');
    this._content.replaceChildren(
      section(
        'Jobs',
        'jobs',
        jobs.length,
        jobs.length
          ? h('ul', { className: 'hf-List' }, ...jobs.map(j => this._job(j, now)))
          : empty(
              trials.size
                ? 'No jobs besides the trials of the tuning runs below.'
                : 'No jobs yet. Right-click a notebook in the file browser and choose ' +
                    '"Run as job", or press the rocket button in a notebook\'s toolbar.'
            )
      ),
      section(
        'Tuning',
        'tunings',
        tunings ? tunings.length : null,
        tunings === null
          ? empty('Tuning runs are not available right now (the hubforge service did not answer).')
          : tunings.length
            ? h('ul', { className: 'hf-List' }, ...tunings.map(t => this._tuning(t)))
            : empty(
                'No tuning runs. Search a notebook\'s parameters, every trial a job: ' +
                  'hubforge.jobs.tune("train.ipynb", space, "val_accuracy")'
              )
      ),
      section(
        'Schedules',
        'schedules',
        schedules ? schedules.length : null,
        schedules === null
          ? empty('Schedules are not available right now (the hubforge service did not answer).')
          : schedules.length
            ? h('ul', { className: 'hf-List' }, ...schedules.map(s => this._schedule(s)))
            : empty(
                'No schedules. Run a notebook every night or every hour: right-click it, ' +
                  '"Run as job", then "Schedule…".'
              )
      ),
      section(
        'TensorBoards',
        'tensorboards',
        tensorboards.length,
        tensorboards.length
          ? h('ul', { className: 'hf-List' }, ...tensorboards.map(t => this._tensorboard(t)))
          : empty('No TensorBoard running. Open one from a job above ("TensorBoard").')
      ),
      section(
        'Endpoints',
        'endpoints',
        endpoints ? endpoints.length : null,
        endpoints === null
          ? empty('Endpoints are not available right now (the hubforge service did not answer).')
          : endpoints.length
            ? h('ul', { className: 'hf-List' }, ...endpoints.map(e => this._endpoint(e)))
            : empty('No endpoints. Deploy a succeeded job above ("Deploy").')
      ),
      section(
        'For phones',
        'mobile',
        optimizations ? optimizations.length : null,
        optimizations === null
          ? empty('Optimizations for phones are not available right now.')
          : optimizations.length
            ? h('ul', { className: 'hf-List' }, ...optimizations.map(o => this._optimization(o)))
            : empty(
                'No models optimized for phones. Press "Optimize" on a succeeded job or an ' +
                  'endpoint: pruned, clustered and quantized variants, compared side by side.'
              )
      ),
      section(
        'Labeling',
        'labeling',
        projects ? projects.length : null,
        projects === null
          ? empty('Label Studio is not available right now.')
          : projects.length
            ? h('ul', { className: 'hf-List' }, ...projects.map(p => this._project(p)))
            : empty(
                'No labeling projects. Create one in a notebook: ' +
                  'from hubforge.widgets import label'
              )
      ),
      section(
        'Base models',
        'base-models',
        baseModels ? baseModels.length : null,
        baseModels === null
          ? empty('The base-model store cannot be read right now.')
          : baseModels.length
            ? h('ul', { className: 'hf-List' }, ...baseModels.map(m => this._baseModel(m)))
            : empty(
                'No base models yet. Add a pretrained model for the team to fine-tune: ' +
                  'hubforge base-model add NAME MODEL --input-size … --licence … --source …'
              )
      )
    );
    if (focused) {
      (this._content.querySelector(`[data-key="${CSS.escape(focused)}"]`) as HTMLElement)?.focus();
    }
  }

  private _job(job: IJob, now: number): HTMLElement {
    const finished = TERMINAL.has(job.state);
    const key = (what: string) => ({ 'data-key': `job:${job.id}:${what}` });
    const actions = [
      actionButton('Logs', `Follow the logs of ${jobName(job)}`, () =>
        this.actions.followLogs(job)
      ),
      !finished &&
        actionButton('Cancel', `Cancel ${jobName(job)}`, () => this.actions.cancel(job)),
      actionButton('TensorBoard', `Open TensorBoard for ${jobName(job)}`, () =>
        this.actions.openTensorBoard(job)
      ),
      job.state === 'succeeded' &&
        actionButton('Deploy', `Deploy the model ${jobName(job)} exported`, () =>
          this.actions.deploy(job)
        ),
      job.state === 'succeeded' &&
        actionButton('Optimize', `Optimize the model of ${jobName(job)} for phones`, () =>
          this.actions.optimize({ job: job.id }, `the model of ${jobName(job)}`)
        ),
      job.spec?.source?.endsWith('.ipynb') &&
        actionButton('Notebook', `Open the notebook of ${jobName(job)}`, () =>
          this.actions.openNotebook(job)
        )
    ].filter(Boolean) as HTMLButtonElement[];
    for (const button of actions) {
      Object.assign(button.dataset, { key: key(button.textContent || '')['data-key'] });
    }
    const figures = job.artifacts?.figures || [];
    const text = progressText(job);
    return h(
      'li',
      { className: 'hf-Item hf-Job', dataset: { job: job.id, state: job.state } },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name', title: job.id }, jobName(job)),
        badge(job.state)
      ),
      h('div', { className: 'hf-Details' }, jobDetails(job, now)),
      text ? h('div', { className: 'hf-Progress' }, text) : null,
      finished ? null : bar(progressFraction(job), `Progress of ${jobName(job)}`),
      job.state === 'failed' && job.reason
        ? h('div', { className: 'hf-Reason', title: job.reason }, job.reason)
        : null,
      queueText(job) ? h('div', { className: 'hf-Queue' }, queueText(job)) : null,
      figures.length
        ? h(
            'div',
            { className: 'hf-Figures' },
            ...figures.map((path, i) =>
              actionButton(`Figure ${i + 1}`, `Open figure ${i + 1} of ${jobName(job)}`, () =>
                this.actions.openFigure(path)
              )
            )
          )
        : null,
      h('div', { className: 'hf-Actions' }, ...actions)
    );
  }

  private _tuning(run: ITuning): HTMLElement {
    const best = bestText(run);
    const deployable = bestJob(run, this.model.snapshot.jobs);
    const classifier = classificationOf(run, this.model.snapshot.classifications);
    return h(
      'li',
      { className: 'hf-Item hf-Tuning', dataset: { tuning: run.id, state: run.state } },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name', title: run.id }, run.name),
        badge(run.state)
      ),
      h('div', { className: 'hf-Details' }, tuningSummary(run)),
      best ? h('div', { className: 'hf-Best' }, best) : null,
      run.reason ? h('div', { className: 'hf-Reason', title: run.reason }, run.reason) : null,
      plot(run),
      trialTable(run),
      h(
        'div',
        { className: 'hf-Actions' },
        classifier &&
          run.best &&
          actionButton(
            'Report',
            `The report of ${run.name}'s best model: accuracy per class, confusion matrix, mistakes`,
            () => this.actions.openReport(classifier)
          ),
        classifier &&
          run.best &&
          actionButton(
            'Pre-label the rest',
            `The best model's guess for every item of ${classifier.project} not labeled yet`,
            () => this.actions.prelabel(classifier)
          ),
        deployable &&
          actionButton('Deploy best', `Deploy the model of ${run.name}'s best trial`, () =>
            this.actions.deploy(deployable)
          ),
        run.trials.some(t => t.state !== 'pending') &&
          actionButton(
            'TensorBoard',
            `Compare the trials of ${run.name} in TensorBoard (its HParams dashboard)`,
            () => this.actions.openTuningTensorBoard(run)
          ),
        run.state === 'running' &&
          actionButton('Cancel', `Cancel the search ${run.name} and its trials`, () =>
            this.actions.cancelTuning(run)
          )
      )
    );
  }

  private _schedule(schedule: ISchedule): HTMLElement {
    const recent = schedule.runs.slice(-5).reverse();
    const last = schedule.runs[schedule.runs.length - 1];
    return h(
      'li',
      {
        className: 'hf-Item hf-Schedule',
        dataset: { schedule: schedule.id, state: schedule.paused ? 'paused' : 'active' }
      },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name', title: `${schedule.id}: ${schedule.cron}` }, schedule.name),
        badge(schedule.paused ? 'paused' : 'active')
      ),
      h('div', { className: 'hf-Details' }, scheduleSummary(schedule)),
      Object.keys(schedule.params || {}).length
        ? h('div', { className: 'hf-Details' }, `with ${paramsText(schedule.params)}`)
        : null,
      last && last.state === 'failed' && last.reason
        ? h('div', { className: 'hf-Reason', title: last.reason }, last.reason)
        : null,
      recent.length
        ? h(
            'table',
            { className: 'hf-Runs', 'aria-label': `Recent runs of ${schedule.name}` },
            h(
              'tbody',
              {},
              ...recent.map(run =>
                h(
                  'tr',
                  { dataset: { run: String(run.number), state: run.state }, title: run.due },
                  h('td', {}, runText(run)),
                  h('td', {}, badge(run.state)),
                  h(
                    'td',
                    {},
                    run.lab_path
                      ? actionButton(
                          'Open',
                          `Open run ${run.number} of ${schedule.name} with its outputs`,
                          () => this.actions.openExecuted(run)
                        )
                      : null,
                    run.started
                      ? actionButton(
                          'TensorBoard',
                          `Open TensorBoard for run ${run.number} of ${schedule.name}`,
                          () => this.actions.openRunTensorBoard(run)
                        )
                      : null
                  )
                )
              )
            )
          )
        : null,
      h(
        'div',
        { className: 'hf-Actions' },
        actionButton(
          schedule.paused ? 'Resume' : 'Pause',
          `${schedule.paused ? 'Resume' : 'Pause'} the schedule ${schedule.name}`,
          () => this.actions.pauseSchedule(schedule, !schedule.paused)
        ),
        schedule.path &&
          actionButton(
            'Update notebook',
            `Runs of ${schedule.name} from now on run ${schedule.path} as it is now`,
            () => this.actions.updateSchedule(schedule)
          ),
        actionButton('Delete', `Delete the schedule ${schedule.name} (past runs stay)`, () =>
          this.actions.deleteSchedule(schedule)
        )
      )
    );
  }

  private _baseModel(model: IBaseModel): HTMLElement {
    return h(
      'li',
      {
        className: 'hf-Item hf-BaseModel',
        dataset: { baseModel: model.name },
        title: `From ${model.source}`
      },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name' }, model.name),
        model.private ? badge('private') : null
      ),
      h('div', { className: 'hf-Details' }, baseModelDetails(model))
    );
  }

  private _tensorboard(tb: ITensorBoard): HTMLElement {
    const runs = Object.keys(tb.logdirs || {}).join(', ');
    return h(
      'li',
      { className: 'hf-Item hf-TensorBoard', dataset: { tensorboard: tb.name } },
      h('div', { className: 'hf-ItemHead' }, h('span', { className: 'hf-Name' }, tb.name)),
      h('div', { className: 'hf-Details' }, runs),
      h(
        'div',
        { className: 'hf-Actions' },
        actionButton('Open', `Open TensorBoard ${tb.name} in a tab`, () =>
          this.actions.showTensorBoard(tb)
        ),
        actionButton('Stop', `Stop TensorBoard ${tb.name}`, () => this.actions.stopTensorBoard(tb))
      )
    );
  }

  private _endpoint(endpoint: IEndpoint): HTMLElement {
    const labels = Object.entries(endpoint.labels || {})
      .map(([label, version]) => `${label}→${version}`)
      .join(', ');
    const copies = copiesText(endpoint);
    const versions =
      `versions ${endpoint.versions.join(', ')}${labels ? ` · ${labels}` : ''}` +
      (copies ? ` · ${copies}` : '');
    return h(
      'li',
      { className: 'hf-Item hf-Endpoint', dataset: { endpoint: endpoint.name } },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name' }, endpoint.name),
        badge(endpoint.running ? 'running' : endpoint.queue ? 'queued' : 'stopped')
      ),
      h('div', { className: 'hf-Details' }, versions),
      endpointQueueText(endpoint)
        ? h('div', { className: 'hf-Queue' }, endpointQueueText(endpoint))
        : null,
      driftText(endpoint)
        ? h(
            'div',
            {
              className: 'hf-Drift',
              title: 'endpoint.drift(training_data) in a notebook shows the report'
            },
            driftText(endpoint)
          )
        : null,
      rolloutText(endpoint.rollout)
        ? h(
            'div',
            {
              className: `hf-Rollout hf-Rollout-${endpoint.rollout?.state}`,
              title: endpoint.rollout?.reason || ''
            },
            rolloutText(endpoint.rollout)
          )
        : null,
      h(
        'div',
        { className: 'hf-Actions' },
        endpoint.running &&
          actionButton('Try it', `Send a prediction to ${endpoint.name}`, () =>
            this.actions.tryEndpoint(endpoint)
          ),
        actionButton('Copy curl', `Copy a curl line that calls ${endpoint.name}`, () =>
          this.actions.copyCurl(endpoint)
        ),
        endpoint.rollout?.state === 'running' &&
          actionButton(
            'Roll back',
            `Send every request of ${endpoint.name} to version ${endpoint.rollout.stable} again`,
            () => this.actions.rollback(endpoint)
          ),
        actionButton(
          'Monitor',
          `Requests, errors and latency of ${endpoint.name} (plots, refreshed live)`,
          () => this.actions.monitor(endpoint)
        ),
        endpoint.versions.length > 0 &&
          actionButton('Optimize', `Optimize the model of ${endpoint.name} for phones`, () =>
            this.actions.optimize({ endpoint: endpoint.name }, `endpoint ${endpoint.name}`)
          ),
        endpoint.running &&
          actionButton('Undeploy', `Undeploy ${endpoint.name}`, () =>
            this.actions.undeploy(endpoint)
          )
      )
    );
  }

  private _optimization(o: IOptimization): HTMLElement {
    const title = optimizationTitle(o);
    const finished = TERMINAL.has(o.state);
    const progress = o.progress;
    const chosen = chosenText(o);
    const job = this.model.snapshot.jobs.find(j => j.id === o.job);
    return h(
      'li',
      { className: 'hf-Item hf-Optimization', dataset: { optimization: o.job, state: o.state } },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name', title: `job ${o.job}` }, title),
        badge(o.state)
      ),
      h('div', { className: 'hf-Details' }, (o.variants || []).join(', ')),
      !finished && progress
        ? h('div', { className: 'hf-Progress' }, `${progress.step}/${progress.total}: ${progress.what}`)
        : null,
      !finished && progress
        ? bar(progress.step / Math.max(1, progress.total), `Variants of ${title} built`)
        : null,
      o.state === 'failed' && o.reason
        ? h('div', { className: 'hf-Reason', title: o.reason }, o.reason)
        : null,
      chosen ? h('div', { className: 'hf-Chosen' }, chosen) : null,
      mobileTable(o),
      o.report ? mobileSvg(o) : null,
      h(
        'div',
        { className: 'hf-Actions' },
        job &&
          actionButton('Logs', `Follow the log of the optimization of ${title}`, () =>
            this.actions.followLogs(job)
          ),
        job &&
          !finished &&
          actionButton('Cancel', `Cancel the optimization of ${title}`, () =>
            this.actions.cancel(job)
          ),
        o.report?.chosen &&
          actionButton('Snippets', `Code that runs the chosen variant of ${title}`, () =>
            this.actions.showSnippets(o)
          ),
        o.report &&
          actionButton('Plot', `Open the plot of accuracy against size of ${title}`, () =>
            this.actions.openFigure(o.report!.plot)
          )
      )
    );
  }

  private _project(project: IProject): HTMLElement {
    const fraction = project.total ? project.labeled / project.total : 0;
    return h(
      'li',
      { className: 'hf-Item hf-Project', dataset: { project: String(project.id) } },
      h(
        'div',
        { className: 'hf-ItemHead' },
        h('span', { className: 'hf-Name' }, project.name),
        h('span', { className: 'hf-Details' }, project.task)
      ),
      h('div', { className: 'hf-Details' }, `${project.labeled}/${project.total} labeled`),
      bar(fraction, `Labeled in ${project.name}`),
      h(
        'div',
        { className: 'hf-Actions' },
        actionButton('Label here', `Open a notebook that labels ${project.name}`, () =>
          this.actions.newLabelingNotebook(project)
        ),
        actionButton('Label Studio', `Open ${project.name} in Label Studio`, () =>
          this.actions.openLabeling(project)
        ),
        trainable(project) &&
          actionButton(
            'Train a model',
            `Search for a classifier of ${project.name}'s labeled items (every trial a job)`,
            () => this.actions.trainModel(project)
          )
      )
    );
  }

  private _error: HTMLElement;
  private _content: HTMLElement;
  private _clock: ReturnType<typeof setInterval>;
}
