import { type LoadRequest, referenceTexts } from '../helpers/load-driver.ts'

/**
 * The chaos load's catalogue: every request is greedy or seeded, so its text is known
 * beforehand (each backend gives the same tokens alone or batched, and a continued stream is
 * exact). Half prefer region eu, half us (x-switchyard-region), so both regions carry load.
 * Streams are longer (200 tokens, EOS ignored) so that some are in flight when something breaks:
 * stories260K generates one in a fraction of a second.
 */
export const MULTI_CHOICE_STREAM = 'completion stream n=2 seeded'

const PROMPTS = [
  'Once upon a time',
  'The little dog',
  'Lily wanted to',
  'One day, a boy named Tim',
  'The sun was shining',
  'In the park',
  'Mom said',
  'There was a big tree',
]
const model = 'stories260K'

function templates(prompt: string, seed: number): Omit<LoadRequest, 'reference' | 'headers'>[] {
  const seeded = { temperature: 0.9, top_p: 0.95, seed }
  const chat = [{ role: 'user', content: prompt }]
  return [
    {
      label: 'completion greedy',
      path: '/v1/completions',
      stream: false,
      body: { model, prompt, max_tokens: 64, temperature: 0 },
    },
    {
      label: 'completion stream greedy',
      path: '/v1/completions',
      stream: true,
      body: { model, prompt, max_tokens: 200, ignore_eos: true, temperature: 0, stream: true },
    },
    {
      label: 'chat seeded',
      path: '/v1/chat/completions',
      stream: false,
      body: { model, messages: chat, max_tokens: 64, ...seeded },
    },
    {
      label: 'completion stream seeded',
      path: '/v1/completions',
      stream: true,
      body: { model, prompt, max_tokens: 200, ignore_eos: true, ...seeded, stream: true },
    },
    {
      label: 'completion seeded',
      path: '/v1/completions',
      stream: false,
      body: { model, prompt, max_tokens: 64, ...seeded },
    },
    {
      label: 'chat stream seeded',
      path: '/v1/chat/completions',
      stream: true,
      body: { model, messages: chat, max_tokens: 200, ignore_eos: true, ...seeded, stream: true },
    },
    {
      label: 'generate greedy',
      path: '/generate',
      stream: false,
      body: { model, prompt, max_length: 48, temperature: 0 },
    },
    // Several choices cannot be continued on another node (docs/operations.md: mid-stream failover).
    {
      label: MULTI_CHOICE_STREAM,
      path: '/v1/completions',
      stream: true,
      body: { model, prompt, max_tokens: 100, n: 2, ignore_eos: true, ...seeded, stream: true },
    },
  ]
}

/** The catalogue, each request with its reference text from a direct, non-streaming call to `backendUrl`. */
export async function buildCatalogue(backendUrl: string): Promise<LoadRequest[]> {
  const requests = PROMPTS.flatMap((prompt, p) =>
    templates(prompt, 100 + p).map((t, k) => ({ ...t, headers: { 'x-switchyard-region': (p + k) % 2 ? 'us' : 'eu' } })),
  )
  return withReferences(backendUrl, requests)
}

/** Streams as long as the context allows (440 tokens), for work that must still be running when a process is stopped. */
export async function buildLongStreams(backendUrl: string): Promise<LoadRequest[]> {
  const long = { max_tokens: 440, ignore_eos: true, stream: true }
  return withReferences(backendUrl, [
    {
      label: 'long completion stream greedy',
      path: '/v1/completions',
      stream: true,
      body: { model, prompt: PROMPTS[0], temperature: 0, ...long },
    },
    {
      label: 'long completion stream seeded',
      path: '/v1/completions',
      stream: true,
      body: { model, prompt: PROMPTS[1], temperature: 0.9, seed: 7, ...long },
    },
    {
      label: 'long chat stream seeded',
      path: '/v1/chat/completions',
      stream: true,
      body: { model, messages: [{ role: 'user', content: PROMPTS[2] }], temperature: 0.9, seed: 8, ...long },
    },
  ])
}

const withReferences = (url: string, requests: Omit<LoadRequest, 'reference'>[]) =>
  Promise.all(requests.map(async (r) => ({ ...r, reference: await referenceTexts(url, r) })))
