/**
 * Optimize for mobile: the dialog that starts an optimization of a job's or an endpoint's
 * model (variants, data, accuracy budget, GPUs) and the one that shows the chosen variant's
 * snippets (Python, Kotlin, Swift).
 */
import { Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { postJSON, request } from './api';
import { h } from './dom';
import { IOptimization } from './model';

export const VARIANTS = [
  'float',
  'dynamic',
  'int8',
  'pruned',
  'clustered',
  'qat',
  'pruned-int8',
  'clustered-int8'
];
const DEFAULT_VARIANTS = new Set(['float', 'dynamic', 'int8', 'pruned-int8']);
const EXPLAINED: Record<string, string> = {
  float: 'as trained',
  dynamic: 'int8 weights',
  int8: 'int8 weights and activations',
  pruned: 'half the weights zero, fine-tuned',
  clustered: 'weights shared among 16 values, fine-tuned',
  qat: 'fine-tuned with quantization in the loop',
  'pruned-int8': 'pruned, then int8',
  'clustered-int8': 'clustered, then int8'
};

/** What to build and measure; the request body the REST route takes. */
export class OptimizeBody extends Widget {
  constructor(readonly forJob: boolean) {
    super();
    this.addClass('hf-Optimize-body');
    const boxes = VARIANTS.map(name => {
      const box = h('input', { type: 'checkbox', name: `variant-${name}`, value: name });
      box.checked = DEFAULT_VARIANTS.has(name);
      this._variants.push(box);
      return h('label', { className: 'hf-Variant', title: EXPLAINED[name] }, box, ` ${name}`);
    });
    this._data = h('input', {
      name: 'data',
      placeholder: forJob ? "the job's own training data" : 'data.npz or a folder of class folders',
      'aria-label': 'Data (a path in your home folder)'
    });
    this._loss = h('input', { name: 'max-accuracy-loss', type: 'number', min: '0', step: '0.5' });
    this._loss.value = '1';
    this._gpus = h('input', { name: 'gpus', type: 'number', min: '0', step: '1' });
    this._gpus.value = '0';
    this.node.append(
      h('p', {}, 'Variants to build and compare (size, accuracy, latency on this CPU):'),
      h('div', { className: 'hf-Variants-choice' }, ...boxes),
      h('label', {}, 'Data to fine-tune and measure with (in your home folder)'),
      this._data,
      h('label', {}, 'Accuracy a variant may lose (points)'),
      this._loss,
      h('label', {}, 'GPUs for the job'),
      this._gpus
    );
  }

  getValue(): Record<string, unknown> {
    const body: Record<string, unknown> = {
      variants: this._variants.filter(b => b.checked).map(b => b.value),
      max_accuracy_loss: Number(this._loss.value),
      gpus: Number(this._gpus.value)
    };
    if (this._data.value.trim()) {
      body.data = this._data.value.trim();
    }
    return body;
  }

  private _variants: HTMLInputElement[] = [];
  private _data: HTMLInputElement;
  private _loss: HTMLInputElement;
  private _gpus: HTMLInputElement;
}

/** Ask, then start the optimization as a job; true when one started. */
export async function optimize(
  source: { job?: string; endpoint?: string },
  label: string
): Promise<boolean> {
  const body = new OptimizeBody(Boolean(source.job));
  const answer = await showDialog({
    title: `Optimize ${label} for phones`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Optimize' })]
  });
  if (!answer.button.accept || !answer.value) {
    return false;
  }
  try {
    const started = await postJSON<IOptimization>('mobile', { ...source, ...answer.value });
    Notification.info(
      `Optimizing ${label} for phones as job ${started.job}: the panel's "For phones" ` +
        'section shows each variant as it is built.',
      { autoClose: 6000 }
    );
    return true;
  } catch (error) {
    void showErrorMessage(
      `Could not optimize ${label}`,
      (error as Error).message || String(error)
    );
    return false;
  }
}

/** The chosen variant's snippets, each with a Copy button. */
export async function showSnippets(o: IOptimization): Promise<void> {
  let full: IOptimization;
  try {
    full = await request<IOptimization>(`mobile/${encodeURIComponent(o.job)}`);
  } catch (error) {
    void showErrorMessage('Could not read the snippets', (error as Error).message || String(error));
    return;
  }
  const node = h('div', { className: 'hf-Snippets' });
  for (const [language, code] of Object.entries(full.snippets || {})) {
    const copy = h('button', { className: 'jp-Button', type: 'button' }, `Copy ${language}`);
    copy.addEventListener('click', () => void navigator.clipboard?.writeText(code));
    node.append(
      h('h4', {}, language),
      h('pre', { className: 'hf-Snippet', dataset: { language } }, code),
      copy
    );
  }
  await showDialog({
    title: `Run ${full.report?.chosen} on a phone`,
    body: new Widget({ node }),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}
