/**
 * The part of workerd's built-in `cloudflare:workers` module the gateway uses: the base class
 * that makes a Durable Object's public methods callable over Workers RPC. `State` is a local
 * addition so subclasses see `ctx` typed (see runtime.ts).
 */
declare module 'cloudflare:workers' {
  export abstract class DurableObject<Env = unknown, State = unknown> {
    protected readonly ctx: State
    protected readonly env: Env
    constructor(ctx: State, env: Env)
  }
}
