/**
 * zmcp's public API: what an application uses, including every type that appears in a public
 * signature. Each export is named on purpose; nothing is re-exported wholesale. What only tests
 * and operators' tooling need is behind subpaths: `zmcp/metrics` (serving and scraping
 * Prometheus metrics), `zmcp/testing` (internals a test of zmcp itself pokes at), `zmcp/mcp`
 * (the MCP bridge, the only part that needs `@modelcontextprotocol/sdk`).
 */
export { Agent } from "./agent.js";
export type { AgentOptions, AgentStats, CallOptions, DropReason, ToolContext, ToolHandler, ToolInfo, ToolSpec } from "./agent.js";
export { Job } from "./jobs.js";
export type { JobEvents, JobState } from "./jobs.js";
export type { ErrorBody, JobStatus, Progress } from "./envelope.js";
export type { RetryOptions } from "./retry.js";
export { Broker } from "./broker.js";
export { RedisStore, StoreUnavailableError, openStore, DEFAULT_STORE_LIMITS } from "./store/index.js";
export type { DurableStore, StoreLimits, StoredMessage, ClaimedMessage, PutOutcome } from "./store/index.js";
export type { StoredNotice, DurableCallOptions } from "./store/caller.js";
export type { DurableStats } from "./store/durable.js";
export type { BrokerOptions, BrokerStats } from "./broker.js";
/** The type of `agent.metrics` and `broker.metrics` (a prom-client registry); serve it with `zmcp/metrics`. */
export type { Registry } from "./metrics.js";
export {
  generateCertificate,
  loadCertificate,
  loadSecretCertificate,
  loadCertDirectory,
  parseCertificate,
  formatCertificate,
  saveCertificate,
  publicKeyOf,
} from "./certs.js";
export type { Certificate, CertDirectory } from "./certs.js";
export { ZmcpError, RemoteError, TimeoutError, ForgedAnswerError, ConfigError, CertError, ProtocolError, WIRE_CODES, LOCAL_CODES } from "./errors.js";
export type { ErrorCode, WireCode, LocalCode } from "./errors.js";
export {
  TokenIssuer,
  TokenVerifier,
  createToken,
  decodeTokenUnverified,
  scopeCovers,
  defaultToolScope,
  DEFAULT_AUDIENCE,
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_TOKEN_TTL_S,
  MAX_TOKEN_TTL_S,
} from "./tokens.js";
export type { AuthorityInput, IssueTokenOptions, TokenIssuerOptions, TokenVerifierOptions, VerifiedToken } from "./tokens.js";
export { TokenSource } from "./token-source.js";
export type { TokenProvider } from "./token-source.js";
export { generateAuthority, saveAuthority, loadJwkFile, loadAuthorityPrivateKey, parseAuthorityJwk, publicJwkOf, jwkThumbprint } from "./jwk.js";
export type { AuthorityJwk } from "./jwk.js";
export { DenyList, parseDenyList } from "./denylist.js";
export type { DenyListFile, DenyListOptions } from "./denylist.js";
export { RateLimiter } from "./ratelimit.js";
export type { RateLimitOptions } from "./ratelimit.js";
export { createLogger } from "./log.js";
export type { Logger, LogLevel } from "./log.js";
export { z85Encode, z85Decode, isZ85Key } from "./z85.js";
