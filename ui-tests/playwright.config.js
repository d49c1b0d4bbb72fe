/**
 * Galata configuration: JupyterLab's base config, run on Debian's Chromium (Playwright's
 * own browser download cannot work on the CI machines), as root, without video/traces.
 */
const { execSync } = require('child_process');
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

function chromiumPath() {
  if (process.env.CHROMIUM_PATH) {
    return process.env.CHROMIUM_PATH;
  }
  try {
    return execSync('which chromium', { encoding: 'utf-8' }).trim();
  } catch {
    throw new Error(
      "Chromium not found: install Debian's package (apt-get install -y chromium) or set CHROMIUM_PATH"
    );
  }
}

// GALATA_PORT lets several checkouts run their own JupyterLab side by side
const port = process.env.GALATA_PORT || '8888';

module.exports = {
  ...baseConfig,
  timeout: 120000,
  expect: { timeout: 30000 },
  retries: process.env.CI ? 1 : 0,
  workers: 1,
  outputDir: 'test-results',
  reporter: [['list'], ['junit', { outputFile: 'test-results/junit.xml' }]],
  use: {
    ...baseConfig.use,
    baseURL: `http://localhost:${port}`,
    video: 'off',
    trace: 'off',
    launchOptions: {
      executablePath: chromiumPath(),
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    }
  },
  webServer: {
    command: `jlpm start --port ${port} --ServerApp.port_retries=0`,
    url: `http://localhost:${port}/lab`,
    timeout: 180 * 1000,
    reuseExistingServer: !process.env.CI
  }
};
