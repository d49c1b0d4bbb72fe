/**
 * A one-line Python input with its button: submits on Enter or on the button. One
 * component for every expression field (breakpoint expressions, open by name, heatmap
 * labels and image overlay).
 */
import * as React from 'react';

export interface IExpressionInputProps {
  /** The input's accessible name (tests and screen readers find it by this). */
  ariaLabel: string;
  placeholder?: string;
  /** Class of the input (default: JupyterLab's styled input). */
  inputClassName?: string;
  /** A visible label before the input; the input is then wrapped in a `<label>`. */
  prefix?: string;
  /** The button's content, its class, accessible name and tooltip. */
  button: React.ReactNode;
  buttonClassName?: string;
  buttonAria?: string;
  buttonTitle?: string;
  /** Disable the button (e.g. while a request runs). */
  busy?: boolean;
  /** Empty the field after a submit (adding items to a list). */
  clearOnSubmit?: boolean;
  /** Called with the text (trimmed when `trim`) on Enter or a click. */
  onSubmit: (value: string) => void;
  trim?: boolean;
}

export function ExpressionInput(
  props: IExpressionInputProps
): React.ReactElement {
  const [value, setValue] = React.useState('');
  const submit = () => {
    props.onSubmit(props.trim ? value.trim() : value);
    if (props.clearOnSubmit) {
      setValue('');
    }
  };
  const input = (
    <input
      className={props.inputClassName ?? 'jp-mod-styled'}
      aria-label={props.ariaLabel}
      placeholder={props.placeholder}
      value={value}
      onChange={event => setValue(event.target.value)}
      onKeyDown={event => {
        if (event.key === 'Enter') {
          event.preventDefault();
          submit();
        }
      }}
    />
  );
  return (
    <>
      {props.prefix !== undefined ? (
        <label>
          {props.prefix} {input}
        </label>
      ) : (
        input
      )}
      <button
        type="button"
        className={props.buttonClassName ?? 'jp-mod-styled'}
        aria-label={props.buttonAria}
        title={props.buttonTitle}
        disabled={props.busy}
        onClick={submit}
      >
        {props.button}
      </button>
    </>
  );
}
