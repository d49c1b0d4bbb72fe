/**
 * The "Breakpoints" section: open any importable source by name, list the followed
 * notebook's breakpoints (cell or file, line, state, hits), and edit the selected one:
 * condition, expressions to evaluate, code to execute, snapshot of locals, max hits,
 * one-instance scope, enable/disable, remove; "remove all".
 */
import { describeHits, totalHits } from './hitCounts';
import * as React from 'react';
import {
  addIcon,
  closeIcon,
  ReactWidget,
  searchIcon
} from '@jupyterlab/ui-components';

import { CommandRegistry } from '@lumino/commands';

import { BrowserModel } from '../captures/browserModel';
import { CommandIDs } from '../commands';
import { ExpressionInput } from '../ui/ExpressionInput';
import { BreakpointModel, IBreakpoint, UNTRUSTED_MESSAGE } from './model';
import { basename } from '../ui/format';
import { KernelBridge } from '../kernel/bridge';
import { IBreakpointState } from '../kernel/protocol';

/** What the section needs: each notebook's breakpoints, and the commands it runs. */
export interface IBreakpointsEnv {
  /** The breakpoints of the notebook a bridge belongs to. */
  breakpointsOf(bridge: KernelBridge): BreakpointModel | null;
  commands: CommandRegistry;
}

/** Where a breakpoint is, for people: "Cell 3, line 9" or "functional.py:2150". */
export function placeLabel(model: BreakpointModel, bp: IBreakpoint): string {
  return bp.cell !== undefined
    ? `Cell ${model.cellNumber(bp.cell)}, line ${bp.line}`
    : `${basename(bp.file ?? '')}:${bp.line}`;
}

function OpenByName(props: { env: IBreakpointsEnv }): React.ReactElement {
  const [error, setError] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const open = (name: string) => {
    if (!name) {
      setError('Type a dotted name, e.g. torch.nn.functional');
      return;
    }
    setBusy(true);
    props.env.commands
      .execute(CommandIDs.openByName, { name })
      .then(() => setError(''))
      .catch((e: Error) => setError(e.message))
      .finally(() => setBusy(false));
  };
  return (
    <div className="jp-NopdbLab-openByName">
      <div className="jp-NopdbLab-row">
        <ExpressionInput
          inputClassName="jp-NopdbLab-input"
          ariaLabel="Open source by name"
          placeholder="Open source: torch.nn.functional, model.encoder…"
          trim
          busy={busy}
          buttonClassName="jp-NopdbLab-textButton"
          buttonTitle="Open the source read-only, with the breakpoint gutter"
          button={
            <>
              <searchIcon.react tag="span" width="14px" height="14px" /> Open
            </>
          }
          onSubmit={open}
        />
      </div>
      {error ? (
        <div className="jp-NopdbLab-error" role="alert">
          {error}
        </div>
      ) : null}
    </div>
  );
}

/** A text field that commits on Enter or when it loses focus. */
function Field(props: {
  label: string;
  value: string;
  placeholder?: string;
  multiline?: boolean;
  error?: string;
  onCommit: (value: string) => void;
}): React.ReactElement {
  const [draft, setDraft] = React.useState(props.value);
  React.useEffect(() => setDraft(props.value), [props.value]);
  const commit = () => {
    if (draft !== props.value) {
      props.onCommit(draft);
    }
  };
  const common = {
    className: `jp-NopdbLab-input${props.error ? ' jp-mod-error' : ''}`,
    'aria-label': props.label,
    placeholder: props.placeholder,
    value: draft,
    onBlur: commit
  };
  return (
    <label className="jp-NopdbLab-field">
      <span className="jp-NopdbLab-fieldLabel">{props.label}</span>
      {props.multiline ? (
        <textarea
          {...common}
          rows={Math.max(2, draft.split('\n').length)}
          onChange={event => setDraft(event.target.value)}
          onKeyDown={event => {
            if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
              commit();
            }
          }}
        />
      ) : (
        <input
          {...common}
          onChange={event => setDraft(event.target.value)}
          onKeyDown={event => {
            if (event.key === 'Enter') {
              commit();
            }
          }}
        />
      )}
      {props.error ? (
        <span className="jp-NopdbLab-error" role="alert">
          {props.error}
        </span>
      ) : null}
    </label>
  );
}

/** How many captures the instance choice lists (the newest). */
const MAX_INSTANCE_CHOICES = 50;

function fieldError(
  state: IBreakpointState | undefined,
  field: string
): string | undefined {
  return state?.state === 'error' && state.field === field
    ? state.message
    : undefined;
}

function Editor(props: {
  bridge: KernelBridge;
  model: BreakpointModel;
  bp: IBreakpoint;
}): React.ReactElement {
  const { bridge, model, bp } = props;
  const state = model.state(bp.id);
  const update = (patch: Parameters<BreakpointModel['update']>[1]) =>
    model.update(bp.id, patch);
  const file = state?.file ?? bp.file;
  // the newest captures of code in this file: the user picks one whose self to keep
  const instances = bridge.captures.where(
    c => (c.kind === 'call' || c.kind === 'hit') && c.file === file,
    MAX_INSTANCE_CHOICES
  );
  if (bp.instance !== null && !instances.some(c => c.id === bp.instance)) {
    const chosen = bridge.captures.get(bp.instance);
    if (chosen) {
      instances.push(chosen);
    }
  }
  const general =
    state?.state === 'error' &&
    !['condition', 'exec', 'max_hits', 'instance', 'grads'].includes(
      state.field
    ) &&
    !state.field.startsWith('evals.')
      ? state.message
      : '';
  return (
    <div className="jp-NopdbLab-bpEditor" data-breakpoint-id={bp.id}>
      {general ? (
        <div className="jp-NopdbLab-error" role="alert">
          {general}
        </div>
      ) : null}
      <Field
        label="Condition"
        placeholder="fire only when… e.g. attn.max() > 0.9"
        value={bp.condition}
        error={fieldError(state, 'condition')}
        onCommit={condition => update({ condition })}
      />
      <div className="jp-NopdbLab-field">
        <span className="jp-NopdbLab-fieldLabel">Evaluate at each hit</span>
        {bp.evals.map((expression, index) => (
          <div className="jp-NopdbLab-row" key={`${index}:${expression}`}>
            <Field
              label={`Expression ${index + 1}`}
              value={expression}
              error={fieldError(state, `evals.${index}`)}
              onCommit={value =>
                update({
                  evals: bp.evals.map((e, i) => (i === index ? value : e))
                })
              }
            />
            <button
              className="jp-NopdbLab-iconButton"
              aria-label={`Remove expression ${index + 1}`}
              title="Remove this expression"
              onClick={() =>
                update({ evals: bp.evals.filter((_, i) => i !== index) })
              }
            >
              <closeIcon.react tag="span" width="14px" height="14px" />
            </button>
          </div>
        ))}
        <AddExpression
          onAdd={value => update({ evals: [...bp.evals, value] })}
        />
      </div>
      <Field
        label="Gradients of"
        placeholder="locals whose gradients each hit keeps, e.g. attn, x"
        value={bp.grads.join(', ')}
        error={fieldError(state, 'grads')}
        onCommit={value =>
          update({
            grads: value
              .split(',')
              .map(name => name.trim())
              .filter(Boolean)
          })
        }
      />
      <Field
        label="Execute at each hit"
        multiline
        placeholder="e.g. attn = attn * 3 (assignments change the running code)"
        value={bp.exec}
        error={fieldError(state, 'exec')}
        onCommit={exec => update({ exec })}
      />
      <div className="jp-NopdbLab-row jp-NopdbLab-bpOptions">
        <label className="jp-NopdbLab-check">
          <input
            type="checkbox"
            checked={bp.keep_locals}
            onChange={event => update({ keep_locals: event.target.checked })}
          />
          Snapshot locals
        </label>
        <label className="jp-NopdbLab-check">
          Max hits
          <input
            className="jp-NopdbLab-input jp-NopdbLab-number"
            type="number"
            min={1}
            aria-label="Max hits"
            placeholder="∞"
            value={bp.max_hits ?? ''}
            onChange={event => {
              const value = event.target.value;
              update({ max_hits: value === '' ? null : Number(value) });
            }}
          />
        </label>
      </div>
      {fieldError(state, 'max_hits') ? (
        <div className="jp-NopdbLab-error">{fieldError(state, 'max_hits')}</div>
      ) : null}
      <label className="jp-NopdbLab-field">
        <span className="jp-NopdbLab-fieldLabel">Only for the instance</span>
        <select
          className="jp-NopdbLab-input"
          aria-label="Only for the instance"
          value={bp.instance ?? ''}
          onChange={event =>
            update({
              instance:
                event.target.value === '' ? null : Number(event.target.value)
            })
          }
        >
          <option value="">every instance</option>
          {instances.map(c => (
            <option key={c.id} value={c.id}>
              self of capture #{c.id} ({c.qualname})
            </option>
          ))}
        </select>
        {fieldError(state, 'instance') ? (
          <span className="jp-NopdbLab-error">
            {fieldError(state, 'instance')}
          </span>
        ) : null}
      </label>
    </div>
  );
}

function AddExpression(props: {
  onAdd: (value: string) => void;
}): React.ReactElement {
  return (
    <div className="jp-NopdbLab-row">
      <ExpressionInput
        inputClassName="jp-NopdbLab-input"
        ariaLabel="New expression"
        placeholder="add an expression, e.g. attn.shape"
        trim
        clearOnSubmit
        buttonClassName="jp-NopdbLab-iconButton"
        buttonAria="Add expression"
        buttonTitle="Add this expression"
        button={<addIcon.react tag="span" width="14px" height="14px" />}
        onSubmit={value => value && props.onAdd(value)}
      />
    </div>
  );
}

function Row(props: {
  model: BreakpointModel;
  bp: IBreakpoint;
  selected: boolean;
  onSelect: () => void;
  onReveal: () => void;
}): React.ReactElement {
  const { model, bp } = props;
  const state = model.state(bp.id);
  const status = state?.state ?? 'unknown';
  const untrusted = model.isUntrusted(bp.id);
  const node = React.useRef<HTMLLIElement>(null);
  React.useEffect(() => {
    // the selected breakpoint stays in view (selected from the gutter or the list)
    if (props.selected) {
      node.current?.scrollIntoView?.({ block: 'nearest' });
    }
  }, [props.selected]);
  return (
    <li
      ref={node}
      className={`jp-NopdbLab-bpRow${props.selected ? ' jp-mod-selected' : ''}`}
      data-breakpoint-id={bp.id}
      data-status={status}
      onClick={props.onSelect}
    >
      <input
        type="checkbox"
        aria-label="Enabled"
        title={
          untrusted
            ? 'Enable: run this code from an untrusted notebook'
            : bp.enabled
              ? 'Disable'
              : 'Enable'
        }
        checked={bp.enabled}
        onClick={event => event.stopPropagation()}
        onChange={event =>
          model.update(bp.id, { enabled: event.target.checked })
        }
      />
      <span
        className={`jp-NopdbLab-bp jp-NopdbLab-bp-${status}`}
        title={state?.message || status}
      />
      <span className="jp-NopdbLab-bpPlace">
        <button
          className="jp-NopdbLab-link"
          title="Show this line"
          onClick={event => {
            event.stopPropagation();
            props.onReveal();
          }}
        >
          {placeLabel(model, bp)}
        </button>
        {state?.function ? (
          <span className="jp-NopdbLab-captureRow-meta"> {state.function}</span>
        ) : null}
        <span className="jp-NopdbLab-bpStatus jp-NopdbLab-captureRow-meta">
          {status}
          {state?.message ? `: ${state.message}` : ''}
        </span>
        {untrusted ? <UntrustedCode bp={bp} /> : null}
      </span>
      <span
        className="jp-NopdbLab-bpHitCount"
        title={describeHits(state)}
        aria-label={describeHits(state)}
      >
        {totalHits(state)}
        {state && state.hits !== totalHits(state) ? (
          <span className="jp-NopdbLab-bpSince"> ({state.hits} new)</span>
        ) : null}
      </span>
      <button
        className="jp-NopdbLab-iconButton"
        aria-label="Remove breakpoint"
        title="Remove this breakpoint"
        onClick={event => {
          event.stopPropagation();
          model.remove(bp.id);
        }}
      >
        <closeIcon.react tag="span" width="14px" height="14px" />
      </button>
    </li>
  );
}

/**
 * A breakpoint held disabled because its code came from an untrusted notebook: says so
 * and shows the code it would run, so the user can judge it before enabling it.
 */
function UntrustedCode(props: { bp: IBreakpoint }): React.ReactElement {
  const { bp } = props;
  const code: [string, string][] = [];
  if (bp.condition.trim()) {
    code.push(['condition', bp.condition]);
  }
  for (const expression of bp.evals) {
    if (expression.trim()) {
      code.push(['evaluate', expression]);
    }
  }
  if (bp.exec.trim()) {
    code.push(['exec', bp.exec]);
  }
  return (
    <span className="jp-NopdbLab-bpUntrusted" role="note">
      <span className="jp-NopdbLab-bpUntrustedWhy">{UNTRUSTED_MESSAGE}</span>
      {code.map(([kind, text], index) => (
        <span className="jp-NopdbLab-bpUntrustedCode" key={index}>
          <span className="jp-NopdbLab-captureRow-meta">{kind}</span>{' '}
          <code>{text}</code>
        </span>
      ))}
    </span>
  );
}

function Breakpoints(props: {
  bridge: KernelBridge;
  model: BreakpointModel;
  env: IBreakpointsEnv;
}): React.ReactElement {
  const { bridge, model, env } = props;
  const [selected, setSelected] = React.useState<string | null>(null);
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    const rerender = () => setTick(t => t + 1);
    model.changed.connect(rerender);
    bridge.captures.changed.connect(rerender);
    return () => {
      model.changed.disconnect(rerender);
      bridge.captures.changed.disconnect(rerender);
    };
  }, [model, bridge]);
  const list = model.breakpoints;
  const current = list.find(bp => bp.id === selected) ?? null;
  const held = list.filter(bp => model.isUntrusted(bp.id)).length;
  return (
    <div className="jp-NopdbLab-breakpoints">
      <OpenByName env={env} />
      <div className="jp-NopdbLab-row jp-NopdbLab-bpToolbar">
        <span className="jp-NopdbLab-captureRow-meta">
          {list.length
            ? `${list.length} breakpoint${list.length === 1 ? '' : 's'}`
            : 'No breakpoints: click left of a line in a code cell or a source view.'}
        </span>
        {list.length ? (
          <button
            className="jp-NopdbLab-textButton"
            onClick={() =>
              void env.commands.execute(CommandIDs.removeAllBreakpoints)
            }
          >
            Remove all
          </button>
        ) : null}
      </div>
      {held ? (
        <div className="jp-NopdbLab-bpTrustNote" role="alert">
          {held === 1
            ? '1 breakpoint with code from an untrusted notebook is disabled'
            : `${held} breakpoints with code from an untrusted notebook are disabled`}
          : opening a notebook runs nothing. Trust the notebook (“Trust
          Notebook”) or enable each one whose code you have read.
        </div>
      ) : null}
      <ul className="jp-NopdbLab-bpList">
        {list.map(bp => (
          <Row
            key={bp.id}
            model={model}
            bp={bp}
            selected={bp.id === selected}
            onSelect={() => setSelected(bp.id === selected ? null : bp.id)}
            onReveal={() =>
              void env.commands.execute(CommandIDs.revealBreakpoint, {
                id: bp.id
              })
            }
          />
        ))}
      </ul>
      {current ? (
        <Editor key={current.id} bridge={bridge} model={model} bp={current} />
      ) : null}
    </div>
  );
}

/** The breakpoints section of the browser. */
export class BreakpointsView extends ReactWidget {
  constructor(
    private readonly _model: BrowserModel,
    private readonly _env: IBreakpointsEnv
  ) {
    super();
    this.addClass('jp-NopdbLab-breakpointsView');
    this.title.label = 'Breakpoints';
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const bridge = this._model.bridge;
    const model = bridge ? this._env.breakpointsOf(bridge) : null;
    if (!bridge || !model || bridge.state.status !== 'ready') {
      return (
        <div className="jp-NopdbLab-empty">
          Breakpoints appear here once the notebook's kernel runs nopdb-lab.
        </div>
      );
    }
    return <Breakpoints bridge={bridge} model={model} env={this._env} />;
  }
}
