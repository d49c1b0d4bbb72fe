/**
 * The "Captures" section: search and filters over the followed notebook's captures,
 * newest first, in a virtualised list (only the visible rows are in the DOM).
 */
import * as React from 'react';
import { List, RowComponentProps } from 'react-window';
import { ReactWidget } from '@jupyterlab/ui-components';

import { BrowserModel } from './browserModel';
import { CaptureListModel } from './captureList';
import { formatBytes, formatTime } from '../ui/format';
import { FileNamer } from '../cells/registry';
import { CaptureKind, ICaptureBrief } from '../kernel/protocol';
import { GradientMark } from '../gradients/GradientMark';

const ROW_HEIGHT = 40;

const KIND_LABELS: Record<string, string> = {
  call: 'call',
  hit: 'hit',
  attention: 'attn',
  stack: 'stack'
};

interface IRowProps {
  rows: readonly ICaptureBrief[];
  selectedId: number | null;
  onSelect: (id: number) => void;
  names: FileNamer;
}

function CaptureRow({
  index,
  style,
  ariaAttributes,
  rows,
  selectedId,
  onSelect,
  names
}: RowComponentProps<IRowProps>): React.ReactElement {
  const brief = rows[index];
  const failed =
    (brief.kind === 'call' && brief.exception) ||
    (brief.kind === 'hit' &&
      typeof brief.errors === 'number' &&
      brief.errors > 0);
  const classes = ['jp-NopdbLab-captureRow'];
  if (brief.id === selectedId) {
    classes.push('jp-mod-selected');
  }
  if (failed) {
    classes.push('jp-mod-error');
  }
  return (
    <div
      {...ariaAttributes}
      style={style}
      className={classes.join(' ')}
      data-capture-id={brief.id}
      onClick={() => onSelect(brief.id)}
      title={`${brief.file}:${brief.line}`}
    >
      <div className="jp-NopdbLab-captureRow-main">
        <span className={`jp-NopdbLab-kind jp-NopdbLab-kind-${brief.kind}`}>
          {KIND_LABELS[brief.kind] ?? brief.kind}
        </span>
        <span className="jp-NopdbLab-captureRow-name">{brief.qualname}</span>
        {brief.grads ? <GradientMark marker={brief.grads} /> : null}
        {brief.bundle ? (
          <span
            className="jp-NopdbLab-bundleTag"
            title={`Loaded from ${brief.bundle} (saved as #${brief.original_id})`}
          >
            {brief.bundle}
          </span>
        ) : null}
        <span className="jp-NopdbLab-captureRow-id">#{brief.id}</span>
      </div>
      <div className="jp-NopdbLab-captureRow-meta">
        <span className="jp-NopdbLab-place">
          {names.label(brief.file, brief.line)}
        </span>{' '}
        · {formatTime(brief.time)}
        {brief.nbytes > 0 ? ` · ${formatBytes(brief.nbytes)}` : ''}
        {failed && brief.kind === 'call' ? ' · raised' : ''}
        {failed && brief.kind === 'hit'
          ? ` · ${brief.errors} action error(s)`
          : ''}
      </div>
    </div>
  );
}

function Filters({
  captures
}: {
  captures: CaptureListModel;
}): React.ReactElement {
  const filter = captures.filter;
  return (
    <div className="jp-NopdbLab-filters">
      <input
        className="jp-NopdbLab-search jp-mod-styled"
        type="search"
        placeholder="Search function, file, #id"
        aria-label="Search captures"
        value={filter.text}
        onChange={event => captures.setFilter({ text: event.target.value })}
      />
      <select
        className="jp-mod-styled"
        aria-label="Kind"
        value={filter.kind}
        onChange={event =>
          captures.setFilter({
            kind: event.target.value as CaptureKind | ''
          })
        }
      >
        <option value="">every kind</option>
        <option value="call">calls</option>
        <option value="hit">breakpoint hits</option>
        <option value="attention">attention (SDPA)</option>
        <option value="stack">stacked</option>
      </select>
      <select
        className="jp-mod-styled jp-NopdbLab-functionFilter"
        aria-label="Function"
        value={filter.qualname}
        onChange={event => captures.setFilter({ qualname: event.target.value })}
      >
        <option value="">all functions</option>
        {captures.groups.map(group => (
          <option key={group.qualname} value={group.qualname}>
            {group.qualname} ({group.calls + group.hits})
          </option>
        ))}
      </select>
    </div>
  );
}

/** The list section; re-renders (coalesced per frame) when the model changes. */
export class CaptureListView extends ReactWidget {
  constructor(private readonly _model: BrowserModel) {
    super();
    this.addClass('jp-NopdbLab-listView');
    this.title.label = 'Captures';
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const bridge = this._model.bridge;
    if (!bridge || bridge.state.status !== 'ready') {
      return <div className="jp-NopdbLab-empty">No captures to show.</div>;
    }
    const captures = bridge.captures;
    const rows = captures.view;
    return (
      <div className="jp-NopdbLab-listBody">
        <Filters captures={captures} />
        {captures.lastEviction ? (
          <div className="jp-NopdbLab-notice" role="status">
            {captures.lastEviction}
          </div>
        ) : null}
        <div className="jp-NopdbLab-count">
          {rows.length === captures.size
            ? `${captures.size} captures`
            : `${rows.length} of ${captures.size} captures`}
        </div>
        {rows.length ? (
          <List
            className="jp-NopdbLab-captureList"
            rowComponent={CaptureRow}
            rowCount={rows.length}
            rowHeight={ROW_HEIGHT}
            rowProps={{
              rows,
              selectedId: this._model.selectedId,
              onSelect: (id: number) => this._model.select(id),
              names: this._model.names
            }}
            overscanCount={8}
          />
        ) : (
          <div className="jp-NopdbLab-empty">
            {captures.size
              ? 'No capture matches the filter.'
              : 'Nothing captured yet. Run a cell that uses nopdb_lab.capture_calls(...), ' +
                'capture_call(...) or breakpoint(...).'}
          </div>
        )}
      </div>
    );
  }
}
