const jestJupyterLab = require('@jupyterlab/testutils/lib/jest-config');

const esModules = [
  '@codemirror',
  '@marijn',
  '@microsoft',
  'color',
  'marked',
  '@jupyter/ydoc',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@microsoft/fast',
  '@jupyterlab/',
  'exenv-es6',
  'lib0',
  'nanoid',
  'react-window',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  moduleNameMapper: {
    ...baseConfig.moduleNameMapper,
    // d3 packages are ES modules ("type": "module"); Jest takes their UMD builds
    '^(d3-[a-z-]+)$': '<rootDir>/node_modules/$1/dist/$1.js'
  },
  collectCoverageFrom: [
    'src/**/*.{ts,tsx}',
    '!src/**/*.d.ts',
    '!src/**/.ipynb_checkpoints/*'
  ],
  coverageReporters: ['lcov', 'text'],
  testRegex: 'src/.*/.*.spec.ts[x]?$',
  // one pattern, as in the extension template: the base config's own pattern would
  // leave @jupyterlab packages (ES modules) untransformed
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
