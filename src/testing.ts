/**
 * `zmcp/testing`: internals that tests of zmcp (and of code built on it) poke at, kept out of
 * the core entry so that applications do not build on them.
 */
/** Per-peer clock offsets, as the agent keeps them for deadlines read on the receiver's clock. */
export { ClockOffsets } from "./wire/clock.js";
/** The token claim that binds a token to the caller's CURVE key. */
export { CNF_KEY } from "./auth/tokens.js";
