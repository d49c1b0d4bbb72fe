/**
 * A read-only view of a source file that the kernel provides (so files outside the
 * server's root, and notebook cells, work too), scrolled to a line.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import {
  CodeEditor,
  CodeEditorWrapper,
  IEditorServices
} from '@jupyterlab/codeeditor';
import { CodeMirrorEditor } from '@jupyterlab/codemirror';
import { fileIcon } from '@jupyterlab/ui-components';
import { EditorView } from '@codemirror/view';

import { basename } from '../ui/format';

let sourceViews = 0;

/**
 * Create the widget showing `text` (a file's source) with `line` (1-based) selected;
 * `prepare` sees the editor model before the editor is made.
 */
export function createSourceView(
  editorServices: IEditorServices,
  file: string,
  text: string,
  line: number,
  prepare?: (model: CodeEditor.IModel) => void
): MainAreaWidget<CodeEditorWrapper> {
  const model = new CodeEditor.Model({ mimeType: 'text/x-python' });
  model.sharedModel.setSource(text);
  prepare?.(model); // e.g. register the model for the breakpoint gutter
  const content = new CodeEditorWrapper({
    factory: editorServices.factoryService.newDocumentEditor,
    model,
    editorOptions: { config: { readOnly: true, lineNumbers: true } }
  });
  content.addClass('jp-NopdbLab-source');
  const widget = new MainAreaWidget({ content });
  widget.id = `nopdb-lab-source-${++sourceViews}-${encodeURIComponent(file)}`;
  widget.title.label = `${basename(file)} (read-only)`;
  widget.title.caption = file;
  widget.title.icon = fileIcon;
  widget.title.closable = true;
  widget.disposed.connect(() => model.dispose());
  revealLine(content, line);
  return widget;
}

/** Select line `line` (1-based) and scroll it near the top, like a jump to a definition. */
export function revealLine(content: CodeEditorWrapper, line: number): void {
  const editor = content.editor;
  const lines = editor.lineCount;
  const index = Math.min(Math.max(line - 1, 0), Math.max(lines - 1, 0));
  const length = editor.getLine(index)?.length ?? 0;
  editor.setSelection({
    start: { line: index, column: 0 },
    end: { line: index, column: length }
  });
  if (editor instanceof CodeMirrorEditor) {
    const view = editor.editor;
    view.dispatch({
      effects: EditorView.scrollIntoView(view.state.doc.line(index + 1).from, {
        y: 'start',
        yMargin: 60
      })
    });
  } else {
    editor.revealPosition({ line: index, column: 0 });
  }
}
