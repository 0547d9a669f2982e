import type { RoutingConfig } from '../config/schema.ts'
import { Cancellation, type UpstreamFetch } from '../upstream/upstream.ts'
import type { Router } from './router.ts'

/** One entry of a backend's GET /v1/models list (`max_model_len` is vLLM's and Switchyard's field). */
export interface ListedModel {
  id: string
  max_model_len?: unknown
}

export interface ModelContextLengths {
  /** The largest context window a node reported for `model` (what an answer can cost at most); undefined until one has, and then a lookup starts. */
  get(model: string | undefined): number | undefined
  /** Records what a node's /v1/models list says (the gateway sees these lists pass through). */
  learn(models: readonly ListedModel[]): void
  /** Asks the nodes now (start-up, tests). */
  refresh(): Promise<void>
}

/**
 * The models' context windows, learned from the nodes' GET /v1/models. A chat request without
 * max_tokens may generate up to the rest of the window, so this is what bounds its token
 * reservation. A lookup runs in the background when a model is unknown (at most one at a time,
 * one per `retryMs`), so no request waits for it.
 */
export function createModelContextLengths(options: {
  router: Router
  upstream: UpstreamFetch
  headers?: () => Promise<Record<string, string>>
  timeoutMs?: number
  retryMs?: number
  /** Told of each lookup a get() starts, to keep it alive past the request (Workers). */
  background?: (work: Promise<void>) => void
}): ModelContextLengths {
  const lengths = new Map<string, number>()
  const retryMs = options.retryMs ?? 10_000
  let running: Promise<void> | undefined
  let lastTry = -Infinity

  const learn = (models: readonly ListedModel[]) => {
    for (const m of models) {
      if (typeof m.max_model_len !== 'number' || !Number.isSafeInteger(m.max_model_len) || m.max_model_len < 1) continue
      // Nodes may differ (two versions mid-rollout): the largest window bounds what any of them can generate.
      lengths.set(m.id, Math.max(lengths.get(m.id) ?? 0, m.max_model_len))
    }
  }
  const askOne = async (url: string) => {
    const cancel = new Cancellation()
    const giveUp = setTimeout(() => cancel.cancel(), options.timeoutMs ?? 2_000)
    try {
      const response = await options.upstream({
        url: `${url}/v1/models`,
        method: 'GET',
        headers: (await options.headers?.()) ?? {},
        cancel,
      })
      const text = await response.text()
      if (response.status !== 200) return
      const list = JSON.parse(text) as { data?: unknown }
      if (Array.isArray(list.data)) learn(list.data.filter((m): m is ListedModel => typeof m?.id === 'string'))
    } catch {
      // An unreachable node teaches nothing; the next lookup asks again.
    } finally {
      clearTimeout(giveUp)
    }
  }
  const refresh = () => {
    lastTry = Date.now()
    running ??= Promise.all(
      options.router
        .nodes()
        .filter((n) => n.usable)
        .map((n) => askOne(n.url)),
    ).then(() => {
      running = undefined
    })
    return running
  }
  return {
    get(model) {
      if (model === undefined) return undefined
      const known = lengths.get(model)
      // Kept alive by the runtime: a lookup whose I/O died with its request would never settle,
      // and `running` would then block every later one.
      if (known === undefined && !running && Date.now() - lastTry >= retryMs) {
        const lookup = refresh()
        options.background?.(lookup)
      }
      return known
    },
    learn,
    refresh,
  }
}

/** The context window behind a public model name: an alias's largest version, once every version is known. */
export function contextOfPublicModel(
  contexts: ModelContextLengths,
  aliases: RoutingConfig['aliases'],
  model: string | undefined,
): number | undefined {
  if (model === undefined) return undefined
  const alias = Object.hasOwn(aliases, model) ? aliases[model] : undefined
  const lengths = (alias ? alias.versions.map((v) => v.model) : [model]).map((id) => contexts.get(id))
  return lengths.some((n) => n === undefined) ? undefined : Math.max(...(lengths as number[]))
}
