/** Galata config for the viewer benchmark (benchmarks/heatmap_viewer.sh). */
const config = require('./playwright.config');

module.exports = {
  ...config,
  testDir: './benchmarks',
  testMatch: '**/*.bench.ts',
  retries: 0,
  reporter: [['list']]
};
