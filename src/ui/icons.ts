/** nopdb-lab's icon (a magnifier with a probe cross), distinct from the debugger's bug. */
import { LabIcon } from '@jupyterlab/ui-components';

import probeSvg from '../../style/icons/probe.svg';

export const probeIcon = new LabIcon({
  name: 'nopdb-lab:probe',
  svgstr: probeSvg
});
