/** Dialog bodies: Run as job (workers, GPUs, parameters, warnings) and an endpoint's Try it. */
import { Widget } from '@lumino/widgets';

import { postJSON, remove, request } from './api';
import { h } from './dom';
import {
  IEndpoint,
  ISavedRequest,
  parseParameter,
  parseSearchEntry,
  savedRequestProblem
} from './model';

interface IParameter {
  name: string;
  value: unknown;
  type: string;
}

interface ICheck {
  warnings: string[];
  parameters: IParameter[];
}

function shown(value: unknown, type: string): string {
  if (type === 'str') {
    return String(value);
  }
  if (type === 'bool') {
    return value ? 'True' : 'False';
  }
  return type === 'int' || type === 'float' ? String(value) : JSON.stringify(value);
}

/** What the Run-as-job form submits: a job, or (Tune…) a search whose trials are jobs. */
export interface IRunRequest {
  route: 'jobs' | 'tunings' | 'schedules';
  body: Record<string, unknown>;
}

const TUNE_HINT =
  'Tune: give a parameter a range ("0.0001 .. 0.1 log", "8 .. 64 step 8") or a list ' +
  '("16, 32, 64"); one left as it is keeps the notebook\'s value.';

const SCHEDULE_HINT =
  'Cron: minute hour day month weekday, e.g. "0 2 * * *" at 02:00 daily, ' +
  '"*/15 * * * *" every 15 minutes, "30 6 * * 1" Mondays at 06:30. The notebook is copied now.';

/** The browser's time zone (e.g. "Europe/Berlin"), the schedule's default. */
function localTimezone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** The Run-as-job form; getValue() is what to POST (or throws why not). */
export class RunAsJobBody extends Widget {
  constructor(readonly path: string) {
    super();
    this.addClass('hf-RunAsJob-body');
    this._workers = h('input', {
      type: 'number',
      min: '1',
      max: '16',
      value: '1',
      name: 'workers',
      'aria-label': 'Workers'
    });
    this._gpus = h('input', {
      type: 'number',
      min: '0',
      max: '8',
      value: '0',
      name: 'gpus',
      'aria-label': 'GPUs per worker'
    });
    this._params = h('div', { className: 'hf-Params' }, 'Reading the notebook…');
    this._tune = h('input', { type: 'checkbox', name: 'tune', 'aria-label': 'Tune the parameters' });
    this._objective = h('input', {
      type: 'text',
      name: 'objective',
      value: 'val_accuracy',
      'aria-label': 'Objective: a metric the notebook reports'
    });
    this._trials = h('input', { type: 'number', min: '1', value: '10', name: 'max_trials' });
    this._parallel = h('input', { type: 'number', min: '1', value: '2', name: 'parallel' });
    this._algorithm = h(
      'select',
      { name: 'algorithm', 'aria-label': 'Search algorithm' },
      h('option', { value: 'random' }, 'random'),
      h('option', { value: 'bayesian' }, 'Bayesian'),
      h('option', { value: 'hyperband' }, 'Hyperband (sets epochs)')
    );
    this._maxEpochs = h('input', { type: 'number', min: '1', value: '9', name: 'max_epochs' });
    this._tuneFields = h(
      'fieldset',
      { className: 'hf-TuneFields', hidden: true },
      h('legend', {}, 'Search'),
      h('p', { className: 'hf-Hint' }, TUNE_HINT),
      h('label', {}, 'Objective ', this._objective),
      h('label', {}, 'Trials ', this._trials),
      h('label', {}, 'At once ', this._parallel),
      h('label', {}, 'Algorithm ', this._algorithm),
      h('label', {}, 'Max epochs (Hyperband) ', this._maxEpochs)
    );
    this._tune.addEventListener('change', () => {
      this._tuneFields.hidden = !this._tune.checked;
      if (this._tune.checked) {
        this._schedule.checked = false;
        this._scheduleFields.hidden = true;
      }
    });
    this._schedule = h('input', {
      type: 'checkbox',
      name: 'schedule',
      'aria-label': 'Run it on a schedule'
    });
    this._cron = h('input', {
      type: 'text',
      name: 'cron',
      value: '0 2 * * *',
      'aria-label': 'Cron expression: minute hour day month weekday'
    });
    this._timezone = h('input', {
      type: 'text',
      name: 'timezone',
      value: localTimezone(),
      'aria-label': 'Time zone'
    });
    this._missed = h(
      'select',
      { name: 'missed', 'aria-label': 'A run missed while the workbench was down' },
      h('option', { value: 'once' }, 'runs once when it is back'),
      h('option', { value: 'skip' }, 'is skipped')
    );
    this._notifyOn = h(
      'select',
      { name: 'notify', 'aria-label': 'Tell me' },
      h('option', { value: 'failure' }, 'when a run fails'),
      h('option', { value: 'always' }, 'after every run'),
      h('option', { value: 'success' }, 'when a run succeeds')
    );
    this._email = h('input', { type: 'checkbox', name: 'email', 'aria-label': 'By e-mail' });
    this._webhook = h('input', {
      type: 'text',
      name: 'webhook',
      placeholder: 'https://… (an address your admin allows)',
      'aria-label': 'Webhook URL'
    });
    this._cronHelp = h('div', { className: 'hf-CronHelp', 'aria-live': 'polite' });
    this._scheduleFields = h(
      'fieldset',
      { className: 'hf-ScheduleFields', hidden: true },
      h('legend', {}, 'Schedule'),
      h('p', { className: 'hf-Hint' }, SCHEDULE_HINT),
      h('label', {}, 'Cron ', this._cron),
      h('label', {}, 'Time zone ', this._timezone),
      this._cronHelp,
      h('label', {}, 'A missed run ', this._missed),
      h('label', {}, 'Tell me ', this._notifyOn),
      h('label', {}, this._email, ' by e-mail'),
      h('label', {}, 'Webhook ', this._webhook)
    );
    this._schedule.addEventListener('change', () => {
      this._scheduleFields.hidden = !this._schedule.checked;
      if (this._schedule.checked) {
        this._tune.checked = false;
        this._tuneFields.hidden = true;
        void this._explain();
      }
    });
    let typing: ReturnType<typeof setTimeout> | null = null;
    for (const input of [this._cron, this._timezone]) {
      input.addEventListener('input', () => {
        if (typing) {
          clearTimeout(typing);
        }
        typing = setTimeout(() => void this._explain(), 300);
      });
    }
    this._warnings = h('ul', { className: 'hf-Warnings', 'aria-live': 'polite' });
    this._error = h('div', { className: 'hf-Error', role: 'alert' });
    this.node.append(
      h('p', {}, `Runs ${path} top to bottom as a TensorFlow job; follow it in the Hubforge panel.`),
      h(
        'div',
        { className: 'hf-Fields' },
        h('label', {}, 'Workers ', this._workers),
        h('label', {}, 'GPUs per worker ', this._gpus)
      ),
      h('label', { className: 'hf-Tune' }, this._tune, ' Tune… (a search: every trial a job)'),
      this._tuneFields,
      h(
        'label',
        { className: 'hf-Schedule' },
        this._schedule,
        ' Schedule… (the workbench runs it at these times, as your job)'
      ),
      this._scheduleFields,
      this._params,
      this._warnings,
      this._error
    );
    this._workers.addEventListener('change', () => void this._check());
    void this._check();
  }

  private async _check(): Promise<void> {
    try {
      const check = await request<ICheck>('job-check', {}, {
        path: this.path,
        workers: this._workers.value || '1'
      });
      this._error.textContent = '';
      this._renderParams(check.parameters);
      this._warnings.replaceChildren(
        ...check.warnings.map(w => h('li', { className: 'hf-Warning' }, `⚠ ${w}`))
      );
    } catch (error) {
      this._params.textContent = '';
      this._error.textContent = (error as Error).message;
    }
  }

  private _renderParams(parameters: IParameter[]): void {
    if (this._paramInputs.size && parameters.length === this._paramInputs.size) {
      return; // keep what the user typed when only the warnings changed
    }
    this._paramInputs.clear();
    this._types.clear();
    if (!parameters.length) {
      this._params.replaceChildren(
        h('p', { className: 'hf-Hint' }, 'No parameters (tag a cell "parameters" to have some).')
      );
      return;
    }
    const rows = parameters.map(p => {
      const input = h('input', {
        type: 'text',
        name: `param-${p.name}`,
        value: shown(p.value, p.type),
        'aria-label': `Parameter ${p.name} (${p.type})`
      });
      this._paramInputs.set(p.name, input);
      this._types.set(p.name, p.type);
      this._defaults.set(p.name, shown(p.value, p.type));
      return h(
        'label',
        { className: 'hf-Param' },
        h('code', {}, p.name),
        ` (${p.type}) `,
        input
      );
    });
    this._params.replaceChildren(h('fieldset', {}, h('legend', {}, 'Parameters'), ...rows));
  }

  getValue(): IRunRequest {
    const workers = Number(this._workers.value);
    const gpus = Number(this._gpus.value);
    if (!Number.isInteger(workers) || workers < 1) {
      throw new Error('Workers must be a whole number of 1 or more');
    }
    if (!Number.isInteger(gpus) || gpus < 0) {
      throw new Error('GPUs per worker must be a whole number of 0 or more');
    }
    if (this._tune.checked) {
      return { route: 'tunings', body: this._search(workers, gpus) };
    }
    const params: Record<string, unknown> = {};
    for (const [name, input] of this._paramInputs) {
      const parsed = parseParameter(input.value, this._types.get(name) || 'str');
      if (!parsed.ok) {
        throw new Error(`Parameter ${name}: ${parsed.error}`);
      }
      params[name] = parsed.value;
    }
    if (this._schedule.checked) {
      return { route: 'schedules', body: this._scheduled(workers, gpus, params) };
    }
    return { route: 'jobs', body: { path: this.path, workers, gpus_per_worker: gpus, params } };
  }

  private _scheduled(
    workers: number,
    gpus: number,
    params: Record<string, unknown>
  ): Record<string, unknown> {
    const cron = this._cron.value.trim();
    if (cron.split(/\s+/).length !== 5) {
      throw new Error(`Cron: five fields (minute hour day month weekday). ${SCHEDULE_HINT}`);
    }
    const webhook = this._webhook.value.trim();
    const notify =
      this._email.checked || webhook
        ? { on: this._notifyOn.value, email: this._email.checked, webhook: webhook || null }
        : undefined;
    return {
      path: this.path,
      cron,
      timezone: this._timezone.value.trim() || 'UTC',
      missed: this._missed.value,
      workers,
      gpus_per_worker: gpus,
      params,
      ...(notify ? { notify } : {})
    };
  }

  /** The cron helper: the expression in words and its next five times, as it is typed. */
  private async _explain(): Promise<void> {
    const cron = this._cron.value.trim();
    try {
      const told = await request<{ description: string; next: string[] }>('cron', {}, {
        cron,
        timezone: this._timezone.value.trim() || 'UTC'
      });
      this._cronHelp.classList.remove('hf-Error');
      this._cronHelp.replaceChildren(
        h('strong', {}, told.description),
        h('ol', { className: 'hf-NextRuns' }, ...told.next.map(t => h('li', {}, t)))
      );
    } catch (error) {
      this._cronHelp.classList.add('hf-Error');
      this._cronHelp.textContent = (error as Error).message;
    }
  }

  private _search(workers: number, gpus: number): Record<string, unknown> {
    const space: Record<string, unknown> = {};
    for (const [name, input] of this._paramInputs) {
      const type = this._types.get(name) || 'str';
      const parsed = parseSearchEntry(input.value, type, this._defaults.get(name) || '');
      if (!parsed.ok) {
        throw new Error(`Parameter ${name}: ${parsed.error}`);
      }
      if (parsed.value !== undefined) {
        space[name] = parsed.value;
      }
    }
    if (!Object.keys(space).length) {
      throw new Error(`Nothing to tune. ${TUNE_HINT}`);
    }
    const algorithm = this._algorithm.value;
    return {
      path: this.path,
      space,
      objective: this._objective.value.trim(),
      max_trials: Number(this._trials.value),
      parallel: Number(this._parallel.value),
      algorithm,
      ...(algorithm === 'hyperband' ? { max_epochs: Number(this._maxEpochs.value) } : {}),
      workers,
      gpus_per_worker: gpus
    };
  }

  private _workers: HTMLInputElement;
  private _gpus: HTMLInputElement;
  private _params: HTMLElement;
  private _warnings: HTMLElement;
  private _error: HTMLElement;
  private _tune: HTMLInputElement;
  private _schedule: HTMLInputElement;
  private _scheduleFields: HTMLElement;
  private _cron: HTMLInputElement;
  private _timezone: HTMLInputElement;
  private _cronHelp: HTMLElement;
  private _missed: HTMLSelectElement;
  private _notifyOn: HTMLSelectElement;
  private _email: HTMLInputElement;
  private _webhook: HTMLInputElement;
  private _tuneFields: HTMLElement;
  private _objective: HTMLInputElement;
  private _trials: HTMLInputElement;
  private _parallel: HTMLInputElement;
  private _algorithm: HTMLSelectElement;
  private _maxEpochs: HTMLInputElement;
  private _paramInputs = new Map<string, HTMLInputElement>();
  private _types = new Map<string, string>();
  private _defaults = new Map<string, string>();
}

/** Paste JSON (prefilled with an example shaped like the model's input), send, see the answer. */
export class TryItBody extends Widget {
  constructor(readonly endpoint: IEndpoint) {
    super();
    this.addClass('hf-TryIt');
    this._input = h('textarea', {
      className: 'hf-TryInput',
      rows: '6',
      'aria-label': 'Request body (JSON)'
    });
    this._input.value = '{"instances": []}';
    this._output = h('pre', { className: 'hf-TryOutput', 'aria-live': 'polite' });
    this._latency = h('span', { className: 'hf-Latency' });
    const send = h('button', { className: 'jp-Button hf-Send', type: 'button' }, 'Send');
    send.addEventListener('click', () => void this._send());
    // saved requests: pick one to fill the request, keep the current one under a name
    this._saved = h('select', { className: 'hf-Saved', 'aria-label': 'Saved requests' });
    this._saved.addEventListener('change', () => {
      const chosen = this._requests.find(r => r.name === this._saved.value);
      if (chosen) {
        this._input.value = JSON.stringify(chosen.request);
      }
    });
    this._name = h('input', {
      className: 'hf-SaveName',
      placeholder: 'name, e.g. two cats',
      'aria-label': 'Name to save this request under'
    });
    const save = h('button', { className: 'jp-Button hf-Save', type: 'button' }, 'Save');
    save.addEventListener('click', () => void this._save());
    const forget = h('button', { className: 'jp-Button hf-Forget', type: 'button' }, 'Delete');
    forget.addEventListener('click', () => void this._forget());
    this._note = h('span', { className: 'hf-SavedNote', 'aria-live': 'polite' });
    this.node.append(
      h('div', { className: 'hf-SavedRow' }, this._saved, forget),
      h('label', {}, 'Request (TF Serving predict JSON)'),
      this._input,
      h('div', { className: 'hf-Actions' }, send, this._latency),
      h('div', { className: 'hf-SavedRow' }, this._name, save, this._note),
      this._output
    );
    void this._loadSaved();
    void request<{ example: unknown }>(`endpoints/${encodeURIComponent(endpoint.name)}`)
      .then(view => {
        if (view.example) {
          this._input.value = JSON.stringify(view.example);
        }
      })
      .catch(() => undefined);
  }

  private async _send(): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(this._input.value);
    } catch {
      this._output.textContent = 'The request is not valid JSON; e.g. {"instances": [[1.0, 2.0]]}';
      return;
    }
    try {
      const answer = await postJSON<{ predictions: unknown; latency_ms: number }>(
        `endpoints/${encodeURIComponent(this.endpoint.name)}`,
        body
      );
      this._output.textContent = JSON.stringify({ predictions: answer.predictions }, null, 1);
      this._latency.textContent = `${answer.latency_ms} ms`;
    } catch (error) {
      this._output.textContent = `Error: ${(error as Error).message}`;
      this._latency.textContent = '';
    }
  }

  private get _base(): string {
    return `endpoints/${encodeURIComponent(this.endpoint.name)}/requests`;
  }

  private _show(requests: ISavedRequest[], selected = ''): void {
    this._requests = requests;
    this._saved.replaceChildren(
      h('option', { value: '' }, requests.length ? 'Saved requests…' : 'No saved requests'),
      ...requests.map(r => h('option', { value: r.name }, r.name))
    );
    this._saved.value = selected;
  }

  private async _loadSaved(): Promise<void> {
    try {
      const { requests } = await request<{ requests: ISavedRequest[] }>(this._base);
      this._show(requests);
    } catch (error) {
      this._note.textContent = `Saved requests: ${(error as Error).message}`;
    }
  }

  private async _save(): Promise<void> {
    const problem = savedRequestProblem(this._name.value, this._input.value);
    if (problem) {
      this._note.textContent = problem;
      return;
    }
    const name = this._name.value.trim();
    try {
      const { requests } = await postJSON<{ requests: ISavedRequest[] }>(this._base, {
        name,
        request: JSON.parse(this._input.value)
      });
      this._show(requests, name);
      this._note.textContent = `Saved as "${name}"`;
    } catch (error) {
      this._note.textContent = `Not saved: ${(error as Error).message}`;
    }
  }

  private async _forget(): Promise<void> {
    const name = this._saved.value;
    if (!name) {
      this._note.textContent = 'Pick a saved request to delete';
      return;
    }
    try {
      const { requests } = await remove<{ requests: ISavedRequest[] }>(
        `${this._base}/${encodeURIComponent(name)}`
      );
      this._show(requests);
      this._note.textContent = `Deleted "${name}"`;
    } catch (error) {
      this._note.textContent = `Not deleted: ${(error as Error).message}`;
    }
  }

  private _input: HTMLTextAreaElement;
  private _output: HTMLElement;
  private _latency: HTMLElement;
  private _saved: HTMLSelectElement;
  private _name: HTMLInputElement;
  private _note: HTMLElement;
  private _requests: ISavedRequest[] = [];
}
