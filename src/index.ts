/** zmcp's public API. Each export is named on purpose; nothing is re-exported wholesale. */
export { Agent } from "./agent.js";
export type { AgentOptions, AgentStats, CallOptions, DropReason, ToolContext, ToolHandler, ToolSpec } from "./agent.js";
export { Broker } from "./broker.js";
export type { BrokerOptions, BrokerStats } from "./broker.js";
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
  CNF_KEY,
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
export { serveMetrics, scrapeMetrics, parsePrometheusText, metricSum, Registry } from "./metrics.js";
export type { MetricsServer } from "./metrics.js";
export { ClockOffsets } from "./clock.js";
export { createLogger } from "./log.js";
export type { Logger, LogLevel } from "./log.js";
export { z85Encode, z85Decode, isZ85Key } from "./z85.js";
