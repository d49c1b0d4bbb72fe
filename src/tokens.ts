/**
 * The services nopdb-lab's plugins provide to each other (as JupyterLab's debugger does):
 * a plugin asks for a token instead of reaching into another plugin's closure.
 */
import { CodeEditor, CodeEditorWrapper } from '@jupyterlab/codeeditor';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { SidePanel } from '@jupyterlab/ui-components';
import { Token } from '@lumino/coreutils';
import { ISignal } from '@lumino/signaling';

import { BreakpointModel } from './breakpoints/model';
import { BrowserModel } from './captures/browserModel';
import { IHeatmapSource } from './heatmap/model';
import { KernelBridge } from './kernel/bridge';

/** The nopdb-lab kernel connection of every open notebook panel. */
export interface IKernelConnections {
  /** The bridge of a panel (one per panel, made when the panel opens). */
  get(panel: NotebookPanel): KernelBridge | undefined;
  /** The panel a bridge serves. */
  panelOf(bridge: KernelBridge): NotebookPanel | undefined;
  /** The bridge of the current notebook (the one the capture browser follows). */
  readonly current: KernelBridge | null;
  /** Every panel and its bridge. */
  entries(): IterableIterator<[NotebookPanel, KernelBridge]>;
  /** A panel got its bridge. */
  readonly added: ISignal<IKernelConnections, IKernelConnections.IEntry>;
  /** A panel closed; its bridge is disposed right after this signal. */
  readonly removed: ISignal<IKernelConnections, IKernelConnections.IEntry>;
}

export namespace IKernelConnections {
  export interface IEntry {
    panel: NotebookPanel;
    bridge: KernelBridge;
  }
}

export const IKernelConnections = new Token<IKernelConnections>(
  'nopdb-lab:IKernelConnections',
  'The nopdb-lab kernel connection of each notebook panel.'
);

/** Opens files the kernel runs (read-only) and cells of a notebook at a line. */
export interface ISourceOpener {
  /** Open `file` at `line` for a notebook's kernel; a cell's code opens the cell. */
  open(bridge: KernelBridge, file: string, line: number): Promise<void>;
  /** Activate a notebook and put the cursor on a line of one of its cells. */
  revealCell(panel: NotebookPanel, cellId: string, line: number): void;
  /** The bridge and file of a source view, if `widget` is one. */
  sourceOf(widget: unknown): { bridge: KernelBridge; file: string } | null;
  /** A source view is being made: its editor model, before the editor exists. */
  readonly viewCreated: ISignal<ISourceOpener, ISourceOpener.IViewCreated>;
}

export namespace ISourceOpener {
  export interface IViewCreated {
    bridge: KernelBridge;
    file: string;
    model: CodeEditor.IModel;
  }
  export type SourceView = MainAreaWidget<CodeEditorWrapper>;
}

export const ISourceOpener = new Token<ISourceOpener>(
  'nopdb-lab:ISourceOpener',
  'Opens kernel-side source files read-only, with the notebook breakpoint gutter.'
);

/** Opens a captured value as a heatmap in the main area. */
export interface IHeatmapOpener {
  open(source: IHeatmapSource): void;
}

export const IHeatmapOpener = new Token<IHeatmapOpener>(
  'nopdb-lab:IHeatmapOpener',
  'Opens captured tensors and arrays as heatmaps.'
);

/** The capture browser: the right sidebar and what it shows. */
export interface ICaptureBrowser {
  readonly model: BrowserModel;
  /** The sidebar; other plugins add their sections to it. */
  readonly sidebar: SidePanel;
}

export const ICaptureBrowser = new Token<ICaptureBrowser>(
  'nopdb-lab:ICaptureBrowser',
  'The capture browser sidebar and its model.'
);

/** The breakpoint list of every open notebook (views of one notebook share one). */
export interface IBreakpointRegistry {
  /** The breakpoints of the notebook a bridge belongs to. */
  modelOf(bridge: KernelBridge): BreakpointModel | null;
  /** A bridge got (or lost) its breakpoint list. */
  readonly changed: ISignal<IBreakpointRegistry, void>;
}

export const IBreakpointRegistry = new Token<IBreakpointRegistry>(
  'nopdb-lab:IBreakpointRegistry',
  'The nopdb-lab breakpoints of each notebook.'
);
