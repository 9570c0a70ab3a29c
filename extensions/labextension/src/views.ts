/** Main-area tabs: a job's logs (tailing like `tail -f`) and a TensorBoard in an iframe. */
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { request } from './api';
import { h } from './dom';
import { IJob, TERMINAL, jobName } from './model';

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
