import assert from 'node:assert/strict'
import { type Browser, chromium, type Page } from 'playwright-core'

/** Debian's Chromium, headless (playwright-core brings no browser of its own here). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
}

/** A page whose console errors and uncaught exceptions are collected into the returned list. */
export async function consolePage(browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const problems: string[] = []
  page.on('console', (message) => message.type() === 'error' && problems.push(`console: ${message.text()}`))
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  return { page, problems }
}

export async function signIn(page: Page, baseUrl: string, adminToken: string): Promise<void> {
  await page.goto(`${baseUrl}/console`)
  await page.getByLabel('Admin token').fill(adminToken)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.locator('#dashboard').waitFor()
}

/**
 * Streams a greedy completion from the playground and returns what the page showed. `lengths`
 * is the text's length after every change of the output, to see that it arrived in pieces.
 */
export async function streamFromPlayground(
  page: Page,
  options: { apiKey: string; region?: string; prompt: string; maxTokens: number },
) {
  await page.getByLabel('API key').fill(options.apiKey)
  await page.getByLabel('API key').press('Tab') // 'change' loads the models the key may use
  await page.locator('#model option[value="stories260K"]').waitFor({ state: 'attached', timeout: 5000 })
  await page.getByLabel('Model', { exact: true }).selectOption('stories260K')
  if (options.region) await page.getByLabel('Region', { exact: true }).selectOption(options.region)
  await page.getByLabel('Completion', { exact: true }).check()
  await page.getByLabel('Prompt', { exact: true }).fill(options.prompt)
  await page.getByLabel('Max tokens').fill(String(options.maxTokens))
  await page.getByLabel('Temperature').fill('0')
  await page.evaluate(() => {
    const output = document.getElementById('completion')!
    const lengths: number[] = []
    ;(window as unknown as { lengths: number[] }).lengths = lengths
    new MutationObserver(() => lengths.push(output.textContent!.length)).observe(output, {
      childList: true,
      characterData: true,
      subtree: true,
    })
  })
  await page.getByRole('button', { name: 'Send' }).click()
  await page.waitForFunction(
    () =>
      document.getElementById('fact-usage')!.textContent !== '–' &&
      !(document.getElementById('send') as HTMLButtonElement).disabled,
    undefined,
    { timeout: 10_000 },
  )
  const fact = async (id: string) => (await page.locator(`#fact-${id}`).textContent())!
  const usage = /^(\d+) prompt \+ (\d+) completion = (\d+) tokens$/.exec(await fact('usage'))
  assert.ok(usage, 'usage is shown')
  return {
    text: (await page.locator('#completion').textContent())!,
    lengths: (await page.evaluate(() => (window as unknown as { lengths: number[] }).lengths)).filter((n) => n > 0),
    region: await fact('region'),
    node: await fact('node'),
    finish: await fact('finish'),
    usage: { prompt: Number(usage[1]), completion: Number(usage[2]), total: Number(usage[3]) },
    error: (await page.locator('#playground-error').textContent())!,
  }
}

/** The checks every streamed playground answer must pass. */
export function assertStreamed(
  result: Awaited<ReturnType<typeof streamFromPlayground>>,
  expectedStart: string,
  maxTokens: number,
): void {
  assert.equal(result.error, '')
  assert.ok(
    result.text.startsWith(expectedStart),
    `greedy text starts with the reference continuation: ${JSON.stringify(result.text.slice(0, 200))}`,
  )
  assert.ok(new Set(result.lengths).size >= 3, `text arrived in pieces: ${JSON.stringify(result.lengths)}`)
  assert.deepEqual(
    result.lengths,
    [...result.lengths].sort((x, y) => x - y),
    'the text only grows',
  )
  assert.equal(result.usage.prompt + result.usage.completion, result.usage.total)
  assert.ok(result.usage.completion > 0 && result.usage.completion <= maxTokens)
  assert.match(result.finish, /^(stop|length)$/)
}
