/**
 * zmcp's public API: what an application uses, including every type that appears in a public
 * signature. Each export is named on purpose; nothing is re-exported wholesale. What only tests
 * and operators' tooling need is behind subpaths: `zmcp/metrics` (serving and scraping
 * Prometheus metrics), `zmcp/testing` (internals a test of zmcp itself pokes at), `zmcp/mcp`
 * (the MCP bridge, the only part that needs `@modelcontextprotocol/sdk`).
 */
export { Agent } from "./agent/agent.js";
export { AGENT_DEFAULTS, resolveAgentOptions } from "./agent/options.js";
export type { AgentOptions, AgentStats, CallOptions, DropReason, ToolAnnotations, ToolContext, ToolHandler, ToolInfo, ToolSpec } from "./agent/agent.js";
export type {
  CompleteResult,
  Completer,
  CompletionRef,
  GetPromptResult,
  PromptArgument,
  PromptGetter,
  PromptInfo,
  PromptMessage,
  PromptSpec,
  ReadResourceResult,
  ResourceContents,
  ResourceContext,
  ResourceInfo,
  ResourceReader,
  ResourceSpec,
  ResourceTemplateInfo,
} from "./agent/resources.js";
export { Job } from "./agent/jobs.js";
export type { JobEvents, JobState } from "./agent/jobs.js";
export type { ErrorBody, JobStatus, Progress } from "./wire/envelope.js";
export type { RetryOptions } from "./agent/retry.js";
export type { Gaps, Publication, PublicationHandler, SubscribeOptions, Subscription } from "./agent/agent.js";
export { SUBSCRIBE_DEFAULTS } from "./agent/subscriber.js";
export { topicMatches, isTopic, isPattern, MAX_TOPIC_CHARS, MAX_TOPIC_TOKENS, MAX_PATTERNS_PER_AGENT } from "./events/topics.js";
export type { EventSealer, EventSealerFactory, EventKeyContext, OpenedEvent } from "./events/sealer.js";
export { Broker, BROKER_DEFAULTS, resolveBrokerOptions } from "./broker/broker.js";
export type { BrokerOptions, BrokerStats } from "./broker/broker.js";
export { RedisStore, StoreUnavailableError, openStore, DEFAULT_STORE_LIMITS } from "./store/index.js";
export type { DurableStore, StoreLimits, StoredMessage, ClaimedMessage, PutOutcome } from "./store/index.js";
export type { StoredNotice, DurableCallOptions } from "./store/caller.js";
export type { DurableStats } from "./store/durable.js";
/** The type of `agent.metrics` and `broker.metrics` (a prom-client registry); serve it with `zmcp/metrics`. */
export type { Registry } from "./support/metrics.js";
export {
  generateCertificate,
  loadCertificate,
  loadSecretCertificate,
  loadCertDirectory,
  parseCertificate,
  formatCertificate,
  saveCertificate,
  publicKeyOf,
} from "./auth/certs.js";
export type { Certificate, CertDirectory } from "./auth/certs.js";
export { ZmcpError, RemoteError, TimeoutError, ForgedAnswerError, ConfigError, CertError, ProtocolError, EventSealError, WIRE_CODES, LOCAL_CODES } from "./errors.js";
export type { ErrorCode, WireCode, LocalCode, EventSealFailure } from "./errors.js";
export { TokenIssuer, createToken, scopeCovers, topicPatternCovers, defaultToolScope, DEFAULT_AUDIENCE, DEFAULT_CLOCK_SKEW_MS, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S } from "./auth/tokens.js";
export { TokenVerifier, decodeTokenUnverified } from "./auth/token-verifier.js";
export type { IssueTokenOptions, TokenIssuerOptions } from "./auth/tokens.js";
export type { AuthorityInput, TokenVerifierOptions, VerifiedToken } from "./auth/token-verifier.js";
export { TokenSource } from "./auth/token-source.js";
export type { TokenProvider } from "./auth/token-source.js";
export { generateAuthority, saveAuthority, loadJwkFile, loadAuthorityPrivateKey, parseAuthorityJwk, publicJwkOf, jwkThumbprint } from "./auth/jwk.js";
export type { AuthorityJwk } from "./auth/jwk.js";
export { DenyList, parseDenyList } from "./auth/denylist.js";
export type { DenyListFile, DenyListOptions } from "./auth/denylist.js";
export { RateLimiter } from "./auth/ratelimit.js";
export type { RateLimitOptions } from "./auth/ratelimit.js";
export { createLogger, toLogger } from "./support/log.js";
export type { Logger, LoggerInput, LogLevel, PinoStyleLogger } from "./support/log.js";
export { z85Encode, z85Decode, isZ85Key } from "./wire/z85.js";
export { CircuitOpenError } from "./agent/circuit.js";
export type { CircuitOptions, CircuitState } from "./agent/circuit.js";
export { groupKeys, GROUP_KEYS_DEFAULTS } from "./events/group-keys.js";
export type { GroupKeysOptions } from "./events/group-keys.js";
export { serveEventKeys, EventKeyDistributor, DISTRIBUTOR_DEFAULTS } from "./events/distributor.js";
export type { EventKeyDistributorOptions, RotationReason } from "./events/distributor.js";
