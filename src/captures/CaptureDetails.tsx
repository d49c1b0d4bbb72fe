/**
 * The "Details" section: a capture's arguments, locals, return value or exception, action
 * errors and stack. Containers expand lazily (the kernel summarises their items on
 * request); every value can be copied as Python or inserted into a new cell.
 */
import * as React from 'react';
import {
  addIcon,
  caretDownIcon,
  caretRightIcon,
  copyIcon,
  deleteIcon,
  duplicateIcon,
  fileIcon,
  inspectorIcon,
  LabIcon,
  launchIcon,
  ReactWidget,
  shareIcon,
  tableRowsIcon
} from '@jupyterlab/ui-components';

import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from '../commands';
import { compareIcon } from '../bundles/icons';
import { BrowserModel } from './browserModel';
import {
  formatShape,
  formatStats,
  formatSummary,
  isExpandable,
  isTensorLike
} from '../ui/format';
import { KernelBridge } from '../kernel/bridge';
import { ICaptureDetail, IChild, ISummary, PathStep } from '../kernel/protocol';
import { formatTime } from '../ui/format';
import { foldFrames, IFrameLike } from './stackFrames';
import { OPEN_DETAILS_IN_MAIN } from './detailsCommand';
import { runInputOf } from '../probes/session';
import {
  GradientsSection,
  StackGradientsSection
} from '../gradients/GradientsSection';

/** What the views act through: the browser model (requests) and the commands. */
interface IDetailsEnv {
  model: BrowserModel;
  commands: CommandRegistry;
}

interface IValueProps {
  captureId: number;
  name: string;
  path: PathStep[];
  summary: ISummary;
  env: IDetailsEnv;
  depth: number;
  /** An evaluated expression: shown as `expression → value`. */
  evaluated?: boolean;
  /** The capture's kind: a probe run's input values offer Attribute…. */
  captureKind?: string;
}

/** A small icon button that does not toggle the row it sits in. */
function IconButton(props: {
  icon: LabIcon;
  label: string;
  title: string;
  onClick: () => void;
  size?: string;
}): React.ReactElement {
  const size = props.size ?? '14px';
  return (
    <button
      className="jp-NopdbLab-iconButton"
      title={props.title}
      aria-label={props.label}
      onClick={event => {
        event.stopPropagation();
        props.onClick();
      }}
    >
      <props.icon.react tag="span" width={size} height={size} />
    </button>
  );
}

/** One value: name, summary, expand toggle for containers, copy/insert actions. */
function ValueRow(props: IValueProps): React.ReactElement {
  const { captureId, name, path, summary, env, depth } = props;
  const [open, setOpen] = React.useState(false);
  const [children, setChildren] = React.useState<IChild[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const expandable = isExpandable(summary);

  const toggle = async () => {
    if (!expandable) {
      return;
    }
    if (!open && children === null) {
      try {
        setChildren(await env.model.children(captureId, path));
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
    }
    setOpen(!open);
  };
  const expression = summary.expression;
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <div className="jp-NopdbLab-value" data-path={JSON.stringify(path)}>
      <div
        className="jp-NopdbLab-valueRow"
        style={{ paddingLeft: 4 + depth * 14 }}
        onClick={toggle}
      >
        <span className="jp-NopdbLab-caret">
          {expandable ? (
            <Caret.react tag="span" width="14px" height="14px" />
          ) : null}
        </span>
        <span className="jp-NopdbLab-valueName">{name}</span>
        {props.evaluated && depth === 0 ? (
          <span className="jp-NopdbLab-evalArrow" aria-hidden="true">
            →
          </span>
        ) : null}
        {isTensorLike(summary) ? (
          <span className="jp-NopdbLab-tensorSummary">
            <span className="jp-NopdbLab-shape">{formatShape(summary)}</span>
            <span className="jp-NopdbLab-stats" title={formatStats(summary)}>
              {formatStats(summary)}
            </span>
          </span>
        ) : (
          <span className={`jp-NopdbLab-repr jp-NopdbLab-type-${summary.type}`}>
            {formatSummary(summary)}
          </span>
        )}
        {expression ? (
          <span className="jp-NopdbLab-valueActions">
            {isTensorLike(summary) && (summary.shape?.length ?? 0) >= 2 ? (
              <IconButton
                icon={tableRowsIcon}
                label="Open as heatmap"
                title={`Open ${expression} as a heatmap`}
                onClick={() =>
                  void env.commands.execute(CommandIDs.openHeatmap, {
                    captureId,
                    path,
                    expression,
                    shape: summary.shape ?? [],
                    signed: (summary.min ?? 0) < 0
                  })
                }
              />
            ) : null}
            {isTensorLike(summary) && path.length === 2 ? (
              <IconButton
                icon={duplicateIcon}
                label="Stack across captures"
                title={`Stack ${path[0]}['${path[1]}'] over every capture of this function (layers)`}
                onClick={() =>
                  void env.commands.execute(CommandIDs.stackAcross, {
                    captureId,
                    path
                  })
                }
              />
            ) : null}
            {isTensorLike(summary) &&
            props.captureKind === 'run' &&
            runInputOf(path) !== null ? (
              <IconButton
                icon={inspectorIcon}
                label="Attribute…"
                title={`Attribute this run's objective to input ${String(path[2])}`}
                onClick={() =>
                  void env.commands.execute('nopdb-lab:attribute-value', {
                    captureId,
                    path
                  })
                }
              />
            ) : null}
            {isTensorLike(summary) &&
            props.captureKind === 'attribution' &&
            path.length === 2 &&
            path[0] === 'locals' &&
            path[1] === 'map' ? (
              <IconButton
                icon={inspectorIcon}
                label="Open as attribution"
                title="Open this attribution as a heatmap or a token strip, on the image's patches"
                onClick={() =>
                  void env.commands.execute('nopdb-lab:open-attribution', {
                    captureId
                  })
                }
              />
            ) : null}
            {isTensorLike(summary) ? (
              <IconButton
                icon={compareIcon}
                label="Compare with…"
                title={`Compare ${expression} with another capture of the same shape (A − B)`}
                onClick={() =>
                  void env.commands.execute('nopdb-lab:compare', {
                    captureId,
                    path,
                    expression
                  })
                }
              />
            ) : null}
            <IconButton
              icon={copyIcon}
              label="Copy expression"
              title={`Copy ${expression}`}
              onClick={() =>
                void env.commands.execute(CommandIDs.copyExpression, {
                  expression
                })
              }
            />
            <IconButton
              icon={addIcon}
              label="Insert in a cell below"
              title={`Insert ${expression} in a new cell below`}
              onClick={() =>
                void env.commands.execute(CommandIDs.insertCell, {
                  code: expression
                })
              }
            />
          </span>
        ) : null}
      </div>
      {error ? <div className="jp-NopdbLab-error">{error}</div> : null}
      {open && children
        ? children.map(child => (
            <ValueRow
              key={String(child.key)}
              {...props}
              name={
                typeof child.key === 'number'
                  ? `[${child.key}]`
                  : String(child.key)
              }
              path={[...path, child.key]}
              summary={child.summary}
              depth={depth + 1}
            />
          ))
        : null}
      {open &&
      children &&
      summary.length !== undefined &&
      summary.length > children.length ? (
        <div
          className="jp-NopdbLab-more"
          style={{ paddingLeft: 18 + (depth + 1) * 14 }}
        >
          … {summary.length - children.length} more (use the expression in a
          cell)
        </div>
      ) : null}
    </div>
  );
}

function Section(props: {
  title: string;
  children: React.ReactNode;
}): React.ReactElement {
  return (
    <section className="jp-NopdbLab-section" aria-label={props.title}>
      <h3 className="jp-NopdbLab-sectionTitle">{props.title}</h3>
      {props.children}
    </section>
  );
}

function Values(props: {
  root: 'args' | 'locals' | 'evals';
  values: Record<string, ISummary>;
  detail: ICaptureDetail;
  env: IDetailsEnv;
}): React.ReactElement {
  const names = Object.keys(props.values);
  if (!names.length) {
    return <div className="jp-NopdbLab-none">none</div>;
  }
  return (
    <>
      {names.map(name => (
        <ValueRow
          key={name}
          captureId={props.detail.id}
          name={name}
          path={[props.root, name]}
          summary={props.values[name]}
          env={props.env}
          depth={0}
          evaluated={props.root === 'evals'}
          captureKind={props.detail.kind}
        />
      ))}
    </>
  );
}

/** One frame of a stack: a link that opens its source (the cell, for cell code). */
function FrameLink(props: {
  frame: IFrameLike;
  env: IDetailsEnv;
}): React.ReactElement {
  const { frame, env } = props;
  return (
    <button
      className="jp-NopdbLab-frame"
      title={`Open ${frame.file}:${frame.line} (read-only)`}
      onClick={() =>
        void env.commands.execute(CommandIDs.openSource, {
          file: frame.file,
          line: frame.line
        })
      }
    >
      <span className="jp-NopdbLab-frameName">{frame.name}</span>{' '}
      <span className="jp-NopdbLab-captureRow-meta jp-NopdbLab-place">
        {env.model.names.label(frame.file, frame.line)}
      </span>
    </button>
  );
}

/** A run of kernel-machinery frames, folded behind one line until opened. */
function FoldedFrames(props: {
  frames: { frame: IFrameLike; index: number }[];
  env: IDetailsEnv;
}): React.ReactElement {
  const [open, setOpen] = React.useState(false);
  const count = props.frames.length;
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <li className="jp-NopdbLab-foldedFrames">
      <button
        className="jp-NopdbLab-foldToggle"
        aria-expanded={open}
        title={`${count} frames of the kernel's machinery (IPython, ipykernel, asyncio, …): ${open ? 'hide' : 'show'} them`}
        onClick={() => setOpen(!open)}
      >
        <Caret.react tag="span" width="14px" height="14px" />
        {count} kernel frame{count === 1 ? '' : 's'}
      </button>
      {open ? (
        <ol className="jp-NopdbLab-stack jp-NopdbLab-stackInner">
          {props.frames.map(({ frame, index }) => (
            <li key={index}>
              <FrameLink frame={frame} env={props.env} />
            </li>
          ))}
        </ol>
      ) : null}
    </li>
  );
}

/** A capture's stack, innermost first, the kernel's machinery folded. */
function StackFrames(props: {
  stack: IFrameLike[];
  env: IDetailsEnv;
}): React.ReactElement {
  const groups = foldFrames([...props.stack].reverse());
  return (
    <ol className="jp-NopdbLab-stack">
      {groups.map(group =>
        group.kind === 'frame' ? (
          <li key={group.index}>
            <FrameLink frame={group.frame} env={props.env} />
          </li>
        ) : (
          <FoldedFrames
            key={`folded-${group.frames[0].index}`}
            frames={group.frames}
            env={props.env}
          />
        )
      )}
    </ol>
  );
}

type Loaded =
  | { status: 'loading' }
  | { status: 'loaded'; detail: ICaptureDetail }
  | { status: 'failed'; message: string };

/** Loads and shows one capture. */
function Details(props: {
  bridge: KernelBridge;
  id: number;
  env: IDetailsEnv;
}): React.ReactElement {
  const { bridge, id, env } = props;
  const [loaded, setLoaded] = React.useState<Loaded>({ status: 'loading' });
  React.useEffect(() => {
    let live = true;
    setLoaded({ status: 'loading' });
    env.model
      .detail(id)
      .then(detail => live && setLoaded({ status: 'loaded', detail }))
      .catch(
        error => live && setLoaded({ status: 'failed', message: error.message })
      );
    return () => {
      live = false;
    };
  }, [bridge, id, bridge.captures.get(id)?.grads?.received]);

  if (!bridge.captures.get(id)) {
    return (
      <div className="jp-NopdbLab-empty">
        Capture #{id} is no longer in the store.
      </div>
    );
  }
  if (loaded.status === 'loading') {
    return <div className="jp-NopdbLab-empty">Loading capture #{id}…</div>;
  }
  if (loaded.status === 'failed') {
    return <div className="jp-NopdbLab-error">{loaded.message}</div>;
  }
  const detail = loaded.detail;
  const errors = Array.isArray(detail.errors) ? detail.errors : [];
  return (
    <div className="jp-NopdbLab-details" data-capture-id={detail.id}>
      <div className="jp-NopdbLab-detailsHeader">
        <div>
          <div className="jp-NopdbLab-detailsTitle">
            {detail.kind === 'hit' ? 'Breakpoint hit in ' : ''}
            {detail.kind === 'attention' ? 'Attention (SDPA) in ' : ''}
            {detail.kind === 'stack' ? 'Stacked across captures of ' : ''}
            {detail.qualname}{' '}
            <span className="jp-NopdbLab-captureRow-id">#{detail.id}</span>
            {detail.bundle ? (
              <span
                className="jp-NopdbLab-bundleTag"
                title={`Loaded from ${detail.bundle} (saved as #${detail.original_id})`}
              >
                {detail.bundle}
              </span>
            ) : null}
          </div>
          <div className="jp-NopdbLab-captureRow-meta">
            <span className="jp-NopdbLab-place">
              {env.model.names.label(detail.file, detail.line)}
            </span>{' '}
            · {formatTime(detail.time)} · thread {detail.thread}
          </div>
        </div>
        <IconButton
          icon={fileIcon}
          label="Open source"
          title={`Open ${detail.file}:${detail.line} (read-only, with breakpoints)`}
          size="16px"
          onClick={() =>
            void env.commands.execute(CommandIDs.openSource, {
              file: detail.file,
              line: detail.line
            })
          }
        />
        {detail.kind === 'attention' ? (
          <button
            className="jp-mod-styled jp-NopdbLab-textButton"
            aria-label="Attention sinks"
            title={
              'The attention-sink grid of this record’s layers (one forward pass or ' +
              'generation): the share of each query’s attention on the first k tokens, ' +
              'per layer × head'
            }
            onClick={() =>
              void env.commands.execute(CommandIDs.attentionSinks, {
                captureId: detail.id
              })
            }
          >
            Sinks…
          </button>
        ) : null}
        {detail.kind === 'call' || detail.kind === 'stack' ? (
          <IconButton
            icon={shareIcon}
            label="Gradient flow"
            title={
              detail.kind === 'stack'
                ? 'Open the gradient flow between the stacked captures (captured with grads=True)'
                : `Open the gradient flow between the calls of ${detail.qualname} (captured with grads=True)`
            }
            size="16px"
            onClick={() => {
              const all = env.model.bridge?.captures.all() ?? [];
              void env.commands.execute(
                CommandIDs.openGradientFlow,
                detail.kind === 'stack'
                  ? { stackId: detail.id, title: detail.qualname }
                  : {
                      captureIds: all
                        .filter(
                          c =>
                            c.kind === 'call' && c.qualname === detail.qualname
                        )
                        .map(c => c.id),
                      title: detail.qualname
                    }
              );
            }}
          />
        ) : null}
        <IconButton
          icon={launchIcon}
          label="Open in the main area"
          title="Open these details in a main-area tab (room for big captures)"
          size="16px"
          onClick={() =>
            void env.commands.execute(OPEN_DETAILS_IN_MAIN, {
              captureId: detail.id
            })
          }
        />
        <IconButton
          icon={deleteIcon}
          label="Delete capture"
          title="Delete this capture"
          size="16px"
          onClick={() => {
            void env.commands.execute(CommandIDs.deleteCapture, {
              captureId: detail.id
            });
          }}
        />
      </div>
      {detail.kind === 'call' ? (
        <Section title="Arguments">
          <Values
            root="args"
            values={detail.args ?? {}}
            detail={detail}
            env={env}
          />
        </Section>
      ) : null}
      {detail.kind === 'hit' && Object.keys(detail.evals ?? {}).length ? (
        <Section title="Evaluated">
          <Values
            root="evals"
            values={detail.evals ?? {}}
            detail={detail}
            env={env}
          />
        </Section>
      ) : null}
      <Section title="Locals">
        <Values
          root="locals"
          values={detail.locals}
          detail={detail}
          env={env}
        />
      </Section>
      {detail.kind === 'call' && detail.exception ? (
        <Section title="Raised">
          <div className="jp-NopdbLab-error">{detail.exception}</div>
        </Section>
      ) : null}
      {detail.kind === 'call' && !detail.exception && detail.return_value ? (
        <Section title="Return value">
          <ValueRow
            captureId={detail.id}
            name="return"
            path={['return_value']}
            summary={detail.return_value}
            env={env}
            depth={0}
          />
        </Section>
      ) : null}
      <GradientsSection
        detail={detail}
        bridge={bridge}
        commands={env.commands}
      />
      <StackGradientsSection
        detail={detail}
        bridge={bridge}
        commands={env.commands}
      />
      {errors.length ? (
        <Section title="Action errors">
          {errors.map((error, i) => (
            <div key={i} className="jp-NopdbLab-error">
              <code>{error.action}</code>: {error.message}
            </div>
          ))}
        </Section>
      ) : null}
      <Section title="Stack">
        <StackFrames stack={detail.stack} env={env} />
      </Section>
    </div>
  );
}

/** The details section of the browser. */
export class CaptureDetailsView extends ReactWidget {
  constructor(
    private readonly _model: BrowserModel,
    private readonly _commands: CommandRegistry
  ) {
    super();
    this.addClass('jp-NopdbLab-detailsView');
    this.title.label = 'Details';
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const model = this._model;
    const bridge = model.bridge;
    const id = model.selectedId;
    if (!bridge || bridge.state.status !== 'ready' || id === null) {
      return (
        <div className="jp-NopdbLab-empty">
          Select a capture to see its values.
        </div>
      );
    }
    return (
      <Details
        key={id}
        bridge={bridge}
        id={id}
        env={{ model, commands: this._commands }}
      />
    );
  }
}
