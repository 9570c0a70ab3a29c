/**
 * Hubforge in JupyterLab: the sidebar panel, "Run as job", the status-bar item, job
 * notifications and a TensorBoard launcher card. Every action is a call to the server
 * extension's REST API (/hubforge/api/...), a thin view over Hubforge's Python engines.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  InputDialog,
  Notification,
  ToolbarButton,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PathExt, URLExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { DisposableDelegate } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { baseUrl, postJSON, remove, request } from './api';
import { h } from './dom';
import {
  IEndpoint,
  IJob,
  IProject,
  ITensorBoard,
  ISchedule,
  ITuning,
  idleGpuWarning,
  jobFileLabPath,
  rolloutText,
  driftText,
  scheduledRun,
  jobName,
  statusText
} from './model';
import { HubforgeModel, HubforgePanel, IPanelActions } from './panel';
import { RunAsJobBody, TryItBody } from './dialogs';
import { optimize, showSnippets } from './mobile';
import { logTab, tensorBoardTab, trafficTab } from './views';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<path class="jp-icon3" fill="#616161" d="M12 2 3 7v10l9 5 9-5V7l-9-5zm0 2.3 6.7 3.7L12 11.7 5.3 8 12 4.3zM5 9.7l6 3.3v6.7l-6-3.3V9.7zm8 10v-6.7l6-3.3v6.7l-6 3.3z"/>
</svg>`;
const TB_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<path class="jp-icon3" fill="#e65100" d="M3 20h18v2H3zM5 10h3v8H5zm5-6h3v14h-3zm5 9h3v5h-3z"/></svg>`;

export const hubforgeIcon = new LabIcon({ name: 'hubforge:icon', svgstr: ICON_SVG });
const tensorboardIcon = new LabIcon({ name: 'hubforge:tensorboard', svgstr: TB_SVG });

const CMD = {
  open: 'hubforge:open-panel',
  runAsJob: 'hubforge:run-as-job',
  tensorboard: 'hubforge:open-tensorboard'
};

function failed(title: string) {
  return (error: unknown) => {
    void showErrorMessage(title, (error as Error).message || String(error));
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@hubforge/lab:plugin',
  description: 'The Hubforge sidebar, Run as job, GPU status and job notifications.',
  autoStart: true,
  requires: [],
  optional: [ILayoutRestorer, IStatusBar, IDefaultFileBrowser, ILauncher, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    fileBrowser: IDefaultFileBrowser | null,
    launcher: ILauncher | null
  ) => {
    const model = new HubforgeModel();
    let rootDir = '';
    void request<{ root_dir?: string }>('status')
      .then(status => (rootDir = status.root_dir || ''))
      .catch(() => undefined);

    /** A path as the file browser knows it (relative to this server's root). */
    const relative = (path: string): string =>
      rootDir && path.startsWith(rootDir + '/') ? path.slice(rootDir.length + 1) : path;

    const showTensorBoard = (tb: ITensorBoard): void => {
      const id = `hubforge-tensorboard-${tb.name}`;
      const open = Array.from(app.shell.widgets('main')).find(w => w.id === id);
      if (open) {
        app.shell.activateById(id);
        return;
      }
      app.shell.add(tensorBoardTab(tb.name, tb.url), 'main');
    };

    const openTensorBoardFor = async (logdir: string[], name?: string): Promise<void> => {
      const tb = await postJSON<ITensorBoard>('tensorboards', { logdir, name });
      void model.refresh(false);
      showTensorBoard(tb);
    };

    const deploy = async (job: IJob): Promise<void> => {
      const answer = await InputDialog.getText({
        title: `Deploy ${jobName(job)}`,
        label: 'Endpoint name (deploying to an existing endpoint adds a version)',
        text: jobName(job).replace(/[^a-z0-9-]/g, '-')
      });
      if (!answer.button.accept || !answer.value) {
        return;
      }
      const endpoint = await postJSON<IEndpoint>('endpoints', {
        job: job.id,
        name: answer.value
      });
      Notification.success(`Deployed ${jobName(job)} as ${endpoint.name}`, { autoClose: 5000 });
      await model.refresh();
    };

    const followLogs = (job: IJob): void => {
      const id = `hubforge-logs-${job.id}`;
      const open = Array.from(app.shell.widgets('main')).find(w => w.id === id);
      if (open) {
        app.shell.activateById(id);
      } else {
        app.shell.add(logTab(job), 'main');
      }
    };

    const actions: IPanelActions = {
      followLogs,
      cancel: job =>
        remove(`jobs/${encodeURIComponent(job.id)}`)
          .then(() => model.refresh(false))
          .catch(failed(`Could not cancel ${jobName(job)}`)),
      openTuningTensorBoard: async run => {
        try {
          const tb = await postJSON<ITensorBoard>('tensorboards', { tuning: run.id });
          void model.refresh(false);
          showTensorBoard(tb);
        } catch (error) {
          failed('Could not open TensorBoard')(error);
        }
      },
      trainModel: async project => {
        const answer = await InputDialog.getNumber({
          title: `Train a model for ${project.name}`,
          label: `Trials (each a job, two at a time) on its ${project.labeled} labeled items`,
          value: 6
        });
        if (!answer.button.accept || !answer.value) {
          return;
        }
        try {
          const run = await postJSON<{ name: string; tuning: string }>('classifications', {
            project: project.name,
            max_trials: Math.max(1, Math.round(answer.value))
          });
          Notification.info(
            `Training a model for ${project.name}: the search ${run.name} is under Tuning`,
            { autoClose: 6000 }
          );
          await model.refresh();
        } catch (error) {
          failed(`Could not train a model for ${project.name}`)(error);
        }
      },
      openReport: run => {
        const url = URLExt.join(
          baseUrl,
          'hubforge/api/classifications',
          encodeURIComponent(run.name),
          'report'
        );
        window.open(url, '_blank', 'noopener');
      },
      prelabel: async run => {
        const note = Notification.emit(
          `Pre-labeling ${run.project} with ${run.name}…`,
          'in-progress',
          { autoClose: false }
        );
        try {
          const done = await postJSON<{ prelabeled: number; project: string }>(
            `classifications/${encodeURIComponent(run.name)}/prelabel`,
            {}
          );
          Notification.update({
            id: note,
            message:
              `Pre-labeled ${done.prelabeled} items of ${done.project}: ` +
              'label the least sure first (label(project, order="uncertain"))',
            type: 'success',
            autoClose: 8000
          });
          await model.refresh();
        } catch (error) {
          Notification.dismiss(note);
          failed(`Could not pre-label ${run.project}`)(error);
        }
      },
      pauseSchedule: (schedule, paused) =>
        request(`schedules/${encodeURIComponent(schedule.id)}`, {
          method: 'PATCH',
          body: JSON.stringify({ paused })
        })
          .then(() => model.refresh(false))
          .catch(failed(`Could not ${paused ? 'pause' : 'resume'} ${schedule.name}`)),
      updateSchedule: async schedule => {
        const answer = await showDialog({
          title: `Update ${schedule.name}?`,
          body: `Runs from now on run ${schedule.path} as it is now (past runs keep theirs).`,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Update' })]
        });
        if (answer.button.accept) {
          await request(`schedules/${encodeURIComponent(schedule.id)}`, {
            method: 'PATCH',
            body: JSON.stringify({ update_notebook: true })
          })
            .then(() => {
              Notification.info(`${schedule.name} runs the current ${schedule.path} from now on`, {
                autoClose: 4000
              });
              return model.refresh(false);
            })
            .catch(failed(`Could not update ${schedule.name}`));
        }
      },
      deleteSchedule: async schedule => {
        const answer = await showDialog({
          title: `Delete the schedule ${schedule.name}?`,
          body: 'No more runs. Past runs, their jobs and executed notebooks stay.',
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
        });
        if (answer.button.accept) {
          await remove(`schedules/${encodeURIComponent(schedule.id)}`)
            .then(() => model.refresh(false))
            .catch(failed(`Could not delete ${schedule.name}`));
        }
      },
      openRunTensorBoard: run =>
        openTensorBoardFor([run.job], run.job).catch(failed('Could not open TensorBoard')),
      openExecuted: run => {
        if (run.lab_path) {
          void app.commands.execute('docmanager:open', { path: run.lab_path });
        }
      },
      cancelTuning: run =>
        remove(`tunings/${encodeURIComponent(run.id)}`)
          .then(() => model.refresh(false))
          .catch(failed(`Could not cancel the search ${run.name}`)),
      openTensorBoard: job =>
        openTensorBoardFor([job.id], job.id).catch(failed('Could not open TensorBoard')),
      deploy: job => deploy(job).catch(failed(`Could not deploy ${jobName(job)}`)),
      optimize: async (source, label) => {
        if (await optimize(source, label)) {
          await model.refresh();
        }
      },
      showSnippets,
      openNotebook: job => {
        void app.commands.execute('docmanager:open', { path: relative(job.spec.source || '') });
      },
      openFigure: path => {
        void app.commands.execute('docmanager:open', { path: relative(path) });
      },
      showTensorBoard,
      stopTensorBoard: tb =>
        remove(`tensorboards/${encodeURIComponent(tb.name)}`)
          .then(() => model.refresh(false))
          .catch(failed(`Could not stop TensorBoard ${tb.name}`)),
      tryEndpoint: async endpoint => {
        const body = new TryItBody(endpoint);
        await showDialog({
          title: `Try ${endpoint.name}`,
          body,
          buttons: [Dialog.okButton({ label: 'Close' })]
        });
      },
      copyCurl: async endpoint => {
        // built from the model's signature (the example Try it sends), so it answers as pasted
        let line: string | null = null;
        try {
          const view = await request<{ curl: string | null }>(
            `endpoints/${encodeURIComponent(endpoint.name)}`
          );
          line = view.curl;
        } catch (error) {
          failed(`Could not build a curl line for ${endpoint.name}`)(error);
          return;
        }
        if (!line) {
          Notification.warning(
            `${endpoint.name} is not answering yet (stopped or still loading its model): ` +
              'copy its curl line once it runs.',
            { autoClose: 6000 }
          );
          return;
        }
        try {
          await navigator.clipboard.writeText(line);
          Notification.info(`Copied: ${line}`, { autoClose: 4000 });
        } catch {
          // clipboard refused (no secure context): show the line to copy by hand
          await showDialog({
            title: `curl for ${endpoint.name}`,
            body: new Widget({ node: h('pre', { className: 'hf-Curl' }, line) }),
            buttons: [Dialog.okButton({ label: 'Close' })]
          });
        }
      },
      monitor: endpoint => {
        const id = `hubforge-traffic-${endpoint.name}`;
        const open = Array.from(app.shell.widgets('main')).find(w => w.id === id);
        if (open) {
          app.shell.activateById(id);
        } else {
          app.shell.add(trafficTab(endpoint.name), 'main');
        }
      },
      rollback: async endpoint => {
        const answer = await showDialog({
          title: `Roll back the canary of ${endpoint.name}?`,
          body:
            `Every request goes to version ${endpoint.rollout?.stable} again; ` +
            `version ${endpoint.rollout?.canary} is kept aside, no longer served.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
        });
        if (answer.button.accept) {
          await remove(`endpoints/${encodeURIComponent(endpoint.name)}/rollout`)
            .then(() => model.refresh())
            .catch(failed(`Could not roll back ${endpoint.name}`));
        }
      },
      undeploy: async endpoint => {
        const answer = await showDialog({
          title: `Undeploy ${endpoint.name}?`,
          body: 'Clients calling it get errors until you deploy it again.',
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Undeploy' })]
        });
        if (answer.button.accept) {
          await remove(`endpoints/${encodeURIComponent(endpoint.name)}`)
            .then(() => model.refresh())
            .catch(failed(`Could not undeploy ${endpoint.name}`));
        }
      },
      openLabeling: (project: IProject) => {
        window.open(project.url, '_blank', 'noopener');
      },
      newLabelingNotebook: async (project: IProject) => {
        const contents = app.serviceManager.contents;
        const path = `label-${project.name.replace(/[^A-Za-z0-9_-]+/g, '-')}.ipynb`;
        // listed, not fetched: a missing file would be a 404 in the console
        const listing = await contents.get('', { content: true });
        const exists = (listing.content as Array<{ name: string }>).some(f => f.name === path);
        if (!exists) {
          const source = `from hubforge.widgets import label\n\nlabel(${JSON.stringify(project.name)})`;
          await contents.save(path, {
            type: 'notebook',
            format: 'json',
            content: {
              cells: [{ cell_type: 'code', metadata: {}, outputs: [], execution_count: null, source }],
              metadata: { kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)' } },
              nbformat: 4,
              nbformat_minor: 5
            }
          });
        }
        await app.commands.execute('docmanager:open', { path });
      }
    };

    const panel = new HubforgePanel(model, actions);
    panel.title.icon = hubforgeIcon;
    app.shell.add(panel, 'left', { rank: 250 });
    if (restorer) {
      restorer.add(panel, 'hubforge-panel');
    }
    model.start();

    /** A canary rollout that ended while the Lab is open: promoted, or rolled back and why. */
    const rollouts = new Map<string, string>();
    const drifts = new Map<string, boolean>();
    model.changed.connect(() => {
      for (const endpoint of model.snapshot.endpoints || []) {
        const state = endpoint.rollout?.state;
        if (rollouts.get(endpoint.name) === 'running' && state && state !== 'running') {
          const text = `${endpoint.name}: ${rolloutText(endpoint.rollout)}`;
          const monitor = [{ label: 'Monitor', callback: () => actions.monitor(endpoint) }];
          if (state === 'promoted') {
            Notification.success(text, { autoClose: 8000, actions: monitor });
          } else {
            Notification.error(text, { autoClose: false, actions: monitor });
          }
        }
        if (state) {
          rollouts.set(endpoint.name, state);
        } else {
          rollouts.delete(endpoint.name);
        }
        // the service's drift alert went on while the Lab is open
        const drifted = driftText(endpoint);
        if (drifted && drifts.get(endpoint.name) === false) {
          const monitor = [{ label: 'Monitor', callback: () => actions.monitor(endpoint) }];
          Notification.warning(`${endpoint.name}: ${drifted}`, {
            autoClose: false,
            actions: monitor
          });
        }
        drifts.set(endpoint.name, drifted !== null);
      }
    });

    /** A scheduled run that ended: what it is, and its executed notebook to open. */
    const scheduledRunEnded = (job: IJob): boolean => {
      const run = scheduledRun(job);
      if (!run) {
        return false;
      }
      const schedule = (model.snapshot.schedules || []).find(s => s.id === run.schedule);
      const title = `Scheduled run ${run.run} of ${schedule ? schedule.name : run.schedule}`;
      const path = jobFileLabPath(job.artifacts?.executed_notebook as string | undefined);
      const open = path
        ? [
            {
              label: 'Open notebook',
              callback: () => void app.commands.execute('docmanager:open', { path })
            }
          ]
        : [];
      if (job.state === 'succeeded') {
        Notification.success(`${title} succeeded`, { autoClose: 8000, actions: open });
      } else {
        const why = job.reason ? `: ${job.reason}` : '';
        Notification.error(`${title} ${job.state}${why}`, { autoClose: false, actions: open });
      }
      return true;
    };

    model.jobsEnded.connect((_, changes) => {
      for (const { job } of changes) {
        if (scheduledRunEnded(job)) {
          continue;
        }
        if (job.state === 'succeeded') {
          Notification.success(`Job ${jobName(job)} succeeded`, {
            autoClose: false,
            actions: [
              { label: 'Open TensorBoard', callback: () => void actions.openTensorBoard(job) },
              { label: 'Deploy', callback: () => void actions.deploy(job) }
            ]
          });
        } else if (job.state === 'failed' || job.state === 'damaged') {
          Notification.error(`Job ${jobName(job)} ${job.state}: ${job.reason || 'see its logs'}`, {
            autoClose: false,
            actions: [{ label: 'Show logs', callback: () => followLogs(job) }]
          });
        } else {
          Notification.info(`Job ${jobName(job)} ${job.state}`, { autoClose: 5000 });
        }
      }
    });

    app.commands.addCommand(CMD.open, {
      label: 'Hubforge',
      caption: 'Show the Hubforge panel',
      execute: () => app.shell.activateById(panel.id)
    });

    const runAsJob = async (path: string): Promise<void> => {
      const body = new RunAsJobBody(path);
      const result = await showDialog({
        title: `Run ${PathExt.basename(path)} as a job`,
        body,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
        focusNodeSelector: 'input'
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      if (result.value.route === 'schedules') {
        const made = await postJSON<ISchedule>('schedules', result.value.body);
        const next = made.next.length ? `; next ${made.next[0].words}` : '';
        Notification.success(`Scheduled ${made.name}: ${made.description}${next}`, {
          autoClose: 6000
        });
      } else if (result.value.route === 'tunings') {
        const run = await postJSON<ITuning>('tunings', result.value.body);
        Notification.info(`Tuning ${run.name} (${run.id}): up to ${run.max_trials} trials`, {
          autoClose: 4000
        });
      } else {
        const job = await postJSON<IJob>('jobs', result.value.body);
        Notification.info(`Submitted ${jobName(job)} (${job.id})`, { autoClose: 4000 });
      }
      app.shell.activateById(panel.id);
      await model.refresh(false);
    };

    app.commands.addCommand(CMD.runAsJob, {
      label: 'Run as job…',
      caption: 'Run this notebook as a distributed training job',
      icon: hubforgeIcon,
      isVisible: () => {
        const item = fileBrowser?.selectedItems().next();
        return !item || item.done || item.value.path.endsWith('.ipynb');
      },
      execute: async args => {
        let path = args.path as string | undefined;
        if (!path) {
          const item = fileBrowser?.selectedItems().next();
          path = item && !item.done ? item.value.path : undefined;
        }
        if (!path) {
          const current = app.shell.currentWidget;
          path = current instanceof NotebookPanel ? current.context.path : undefined;
        }
        if (!path) {
          await showErrorMessage('Run as job', 'Select a notebook (.ipynb) first.');
          return;
        }
        await runAsJob(path).catch(failed('Could not submit the job'));
      }
    });
    app.contextMenu.addItem({
      command: CMD.runAsJob,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 3
    });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (nb: NotebookPanel) => {
        const button = new ToolbarButton({
          className: 'hf-RunAsJob',
          icon: hubforgeIcon,
          label: 'Run as job',
          tooltip: 'Run this notebook as a distributed training job',
          onClick: () => void app.commands.execute(CMD.runAsJob, { path: nb.context.path })
        });
        nb.toolbar.insertItem(10, 'hubforge-run-as-job', button);
        return new DisposableDelegate(() => button.dispose());
      }
    });

    app.commands.addCommand(CMD.tensorboard, {
      label: 'TensorBoard',
      caption: 'TensorBoard over your latest jobs',
      icon: tensorboardIcon,
      execute: async () => {
        const { jobs } = await request<{ jobs: IJob[] }>('jobs');
        if (!jobs.length) {
          await showErrorMessage(
            'TensorBoard',
            'You have no jobs yet: TensorBoard shows the logs of your training jobs. ' +
              'Run a notebook as a job first (right-click it → Run as job).'
          );
          return;
        }
        await openTensorBoardFor(jobs.slice(0, 5).map(j => j.id)).catch(
          failed('Could not open TensorBoard')
        );
      }
    });
    if (launcher) {
      launcher.add({ command: CMD.tensorboard, category: 'Other', rank: 1 });
    }

    if (statusBar) {
      const item = new Widget();
      item.addClass('hf-Status');
      item.node.setAttribute('role', 'button');
      item.node.tabIndex = 0;
      item.node.title = 'Hubforge: open the panel';
      const update = () => {
        const server = (model.gpus?.server || []) as any[];
        const mine = server.length
          ? ' · ' +
            server
              .map(
                g =>
                  `GPU ${g.index}` +
                  (g.utilization !== null ? ` ${Math.round(g.utilization)}%` : '') +
                  (g.memory_used_mib !== null && g.memory_total_mib !== null
                    ? ` ${Math.round(g.memory_used_mib)}/${Math.round(g.memory_total_mib)} MiB`
                    : '')
              )
              .join(', ')
          : '';
        item.node.textContent = `Hubforge: ${statusText(model.snapshot.jobs, model.gpus)}${mine}`;
        // once each time jobs start waiting for GPUs while this server holds some
        const warning = idleGpuWarning(model.gpus);
        if (warning && !warned) {
          Notification.warning(
            `Hubforge: ${warning}, so that the queued jobs get its GPUs. A running cell ` +
              'counts as activity; save your work before you step away.',
            { autoClose: false }
          );
        }
        warned = warning !== '';
      };
      let warned = false;
      update();
      model.changed.connect(update);
      const open = () => app.shell.activateById(panel.id);
      item.node.addEventListener('click', open);
      item.node.addEventListener('keydown', e => (e.key === 'Enter' || e.key === ' ') && open());
      statusBar.registerStatusItem('@hubforge/lab:status', { item, align: 'left', rank: 100 });
    }
  }
};

export default plugin;
