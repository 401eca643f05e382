/**
 * Retry throttling, as gRPC's `retryThrottling` does it: a bucket of `maxTokens` tokens, full at
 * first; every try that failed in a way a retry could help takes one, every answered request gives
 * back `tokenRatio`; a failed try is retried only while more than half of the tokens are left.
 *
 * Without it, a node that refuses requests with `OVERLOADED` during a short stall gets every
 * refused request again up to `retries` times: the load it is offered grows while it can least
 * take it, and a stall of a tenth of a second becomes seconds of refusals (measured: an open loop
 * at half a node's throughput, p50 1–2 s and 15k refusals in 3 s, recovered only when the load
 * paused). With it, retries stay at most about `tokenRatio` of the answered requests once the
 * failures outnumber what half the bucket absorbs, and a single command still gets all its
 * retries.
 */
export class RetryBudget {
  #tokens: number;

  /**
   * @param maxTokens size of the bucket (retries are allowed above half of it)
   * @param tokenRatio tokens given back per answered request
   */
  constructor(
    readonly maxTokens: number,
    readonly tokenRatio: number,
  ) {
    this.#tokens = maxTokens;
  }

  /** Tokens left now. */
  get tokens(): number {
    return this.#tokens;
  }

  /** A try failed in a way a retry could help: takes a token; whether it may be retried. */
  failed(): boolean {
    this.#tokens = Math.max(0, this.#tokens - 1);
    return this.#tokens > this.maxTokens / 2;
  }

  /** A request was answered (a result or an error a retry cannot change): gives back a share. */
  answered(): void {
    if (this.#tokens < this.maxTokens) {
      this.#tokens = Math.min(this.maxTokens, this.#tokens + this.tokenRatio);
    }
  }
}
