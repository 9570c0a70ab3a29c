/** Main-area tabs: a job's logs (tailing like `tail -f`), a TensorBoard in an iframe and an
 * endpoint's traffic (plots refreshed every 10 s). */
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { request } from './api';
import { h, svg } from './dom';
import {
  IJob,
  ITraffic,
  ITrafficStep,
  TERMINAL,
  jobName,
  seriesLines,
  trafficSummary
} from './model';

/** Follows one replica's log; a picker switches replica; stops polling when the job ends. */
export class LogView extends Widget {
  constructor(readonly job: IJob) {
    super();
    this.addClass('hf-Logs');
    const replicas = Object.keys(job.replicas || {}).sort();
    if (!replicas.length) {
      replicas.push('worker-0');
    }
    this._picker = h(
      'select',
      { className: 'hf-Replica', 'aria-label': 'Replica' },
      ...replicas.map(r => h('option', { value: r }, r))
    );
    this._picker.addEventListener('change', () => this._switch(this._picker.value));
    this._state = h('span', { className: 'hf-LogState' });
    this._pre = h('pre', { className: 'hf-LogText', tabindex: '0' });
    this.node.append(
      h('div', { className: 'hf-LogBar' }, h('label', {}, 'Replica ', this._picker), this._state),
      this._pre
    );
    this._switch(replicas[0]);
  }

  dispose(): void {
    this._stopped = true;
    clearTimeout(this._timer);
    super.dispose();
  }

  private _switch(replica: string): void {
    this._replica = replica;
    this._offset = 0;
    this._pre.textContent = '';
    clearTimeout(this._timer);
    void this._poll();
  }

  private async _poll(): Promise<void> {
    const replica = this._replica;
    let finished = false;
    try {
      const id = encodeURIComponent(this.job.id);
      const chunk = await request<{ text: string; offset: number }>(
        `jobs/${id}/logs/${encodeURIComponent(replica)}`,
        {},
        { offset: String(this._offset) }
      );
      if (replica !== this._replica) {
        return;
      }
      const atEnd =
        this._pre.scrollTop + this._pre.clientHeight >= this._pre.scrollHeight - 20;
      this._pre.append(chunk.text);
      this._offset = chunk.offset;
      if (atEnd) {
        this._pre.scrollTop = this._pre.scrollHeight;
      }
      const job = await request<IJob>(`jobs/${id}`);
      finished = TERMINAL.has(job.state);
      this._state.textContent = finished
        ? `${job.state}${job.reason ? `: ${job.reason}` : ''}`
        : `${job.state} (following)`;
    } catch (error) {
      this._state.textContent = `Could not read the log: ${(error as Error).message}`;
    }
    if (!this._stopped && !finished) {
      this._timer = setTimeout(() => void this._poll(), 1000);
    }
  }

  private _picker: HTMLSelectElement;
  private _state: HTMLElement;
  private _pre: HTMLElement;
  private _replica = 'worker-0';
  private _offset = 0;
  private _stopped = false;
  private _timer: ReturnType<typeof setTimeout> | undefined;
}

export function logTab(job: IJob): MainAreaWidget<LogView> {
  const widget = new MainAreaWidget({ content: new LogView(job) });
  widget.id = `hubforge-logs-${job.id}`;
  widget.title.label = `Logs: ${jobName(job)}`;
  widget.title.closable = true;
  return widget;
}

export function tensorBoardTab(name: string, url: string): MainAreaWidget<IFrame> {
  const frame = new IFrame({
    sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups', 'allow-downloads']
  });
  frame.url = url;
  const widget = new MainAreaWidget({ content: frame });
  widget.id = `hubforge-tensorboard-${name}`;
  widget.title.label = `TensorBoard: ${name}`;
  widget.title.closable = true;
  widget.addClass('hf-TensorBoardTab');
  return widget;
}

const WINDOWS: [string, string][] = [
  ['15m', 'last 15 minutes'],
  ['1h', 'last hour'],
  ['1d', 'last day']
];

/** An endpoint's requests per second and p50/p99 latency as the gateway counted them, with
 * the window's totals, statuses and versions; refreshed every 10 s while open. */
export class TrafficView extends Widget {
  constructor(readonly endpoint: string) {
    super();
    this.addClass('hf-Traffic');
    this._window = h(
      'select',
      { className: 'hf-TrafficWindow', 'aria-label': 'Window' },
      ...WINDOWS.map(([value, label]) => h('option', { value, selected: value === '1h' }, label))
    );
    this._window.addEventListener('change', () => void this._poll());
    this._summary = h('div', { className: 'hf-TrafficSummary', role: 'status' }, 'Loading…');
    this._plots = h('div', { className: 'hf-TrafficPlots' });
    this._details = h('div', { className: 'hf-Details' });
    this.node.append(
      h('div', { className: 'hf-LogBar' }, h('label', {}, 'Show ', this._window)),
      this._summary,
      this._plots,
      this._details
    );
    void this._poll();
  }

  dispose(): void {
    this._stopped = true;
    clearTimeout(this._timer);
    super.dispose();
  }

  private async _poll(): Promise<void> {
    clearTimeout(this._timer);
    try {
      const traffic = await request<ITraffic>(
        `endpoints/${encodeURIComponent(this.endpoint)}/traffic`,
        {},
        { window: this._window.value, points: '60' }
      );
      this._show(traffic);
    } catch (error) {
      this._summary.textContent = `Could not read the traffic: ${(error as Error).message}`;
    }
    if (!this._stopped) {
      this._timer = setTimeout(() => void this._poll(), 10_000);
    }
  }

  private _show(traffic: ITraffic): void {
    this._summary.textContent = trafficSummary(traffic);
    this._plots.replaceChildren(
      trafficPlot(traffic, ['rps'], 'requests per second'),
      trafficPlot(traffic, ['p50_ms', 'p99_ms'], 'latency p50 and p99, ms'),
      trafficPlot(traffic, ['batch_size'], 'rows per model call (batching merges requests)')
    );
    const listed = (counts: Record<string, number>) =>
      Object.entries(counts)
        .map(([key, n]) => `${key}: ${n}`)
        .join(', ') || 'none';
    this._details.replaceChildren(
      h('div', {}, `By status: ${listed(traffic.totals.by_status)}`),
      h('div', {}, `By version: ${listed(traffic.totals.by_version)}`)
    );
  }

  private _window: HTMLSelectElement;
  private _summary: HTMLElement;
  private _plots: HTMLElement;
  private _details: HTMLElement;
  private _stopped = false;
  private _timer: ReturnType<typeof setTimeout> | undefined;
}

function trafficPlot(traffic: ITraffic, keys: (keyof ITrafficStep)[], title: string): Element {
  const [width, height] = [480, 96];
  const drawn = seriesLines(traffic.series, keys, width, height);
  const top = drawn ? Number(drawn.max.toPrecision(3)) : 0;
  const label = drawn ? `${title}, 0 to ${top}` : `${title}: no requests in this window`;
  return h(
    'figure',
    { className: 'hf-TrafficPlot', dataset: { keys: keys.join(' ') } },
    h('figcaption', {}, label),
    svg(
      'svg',
      { class: 'hf-Plot', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label },
      svg('title', {}, document.createTextNode(label)),
      ...(drawn
        ? keys.flatMap(key =>
            drawn.lines[key].map(points => {
              if (points.includes(' ')) {
                return svg('polyline', { class: `hf-Line hf-Line-${key}`, points, fill: 'none' });
              }
              const [cx, cy] = points.split(','); // one step alone: a dot
              return svg('circle', { class: `hf-Dot hf-Line-${key}`, cx, cy, r: 2.5 });
            })
          )
        : [])
    ),
    h(
      'div',
      { className: 'hf-TrafficAxis' },
      h('span', {}, `${WINDOW_WORDS[traffic.window_s] || `${traffic.window_s} s`} ago`),
      keys.length > 1
        ? h(
            'span',
            {},
            ...keys.map(key => h('span', { className: `hf-Key hf-Key-${key}` }, key.split('_')[0]))
          )
        : null,
      h('span', {}, 'now')
    )
  );
}

const WINDOW_WORDS: Record<number, string> = { 900: '15 min', 3600: '1 h', 86400: '1 day' };

export function trafficTab(endpoint: string): MainAreaWidget<TrafficView> {
  const widget = new MainAreaWidget({ content: new TrafficView(endpoint) });
  widget.id = `hubforge-traffic-${endpoint}`;
  widget.title.label = `Traffic: ${endpoint}`;
  widget.title.closable = true;
  return widget;
}
