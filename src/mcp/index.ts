/** The MCP bridge (`zmcp/mcp`): kept apart from the core API so that plain agents do not load the MCP SDK. */
export { MeshExposer, parseTarget, toolResult, errorResult, toMcpError, NAME_SEPARATOR } from "./expose.js";
export type { ExposeOptions, ExposeTarget, PrefixMode } from "./expose.js";
export { RESOURCE_NOT_FOUND } from "./expose-catalog.js";
export { McpAttachment } from "./attach.js";
export type { AttachOptions } from "./attach.js";
export { serverEnv } from "./attach.js";
export { SchemaCache, DEFAULT_MAX_SCHEMA_BYTES, DEFAULT_SCHEMA_CACHE_BYTES } from "./schemas.js";
export type { SchemaCacheOptions, SchemaVerdict } from "./schemas.js";
export { MeshClientTransport, MeshServerTransport, MCP_RPC_TOOL, MCP_RPC_JOB_TOOL, isMcpBindingTool } from "./transport.js";
export type { MeshClientTransportOptions, MeshServerTransportOptions } from "./transport.js";
export { serveHttp, checkHttpSetup, isLoopback, parseHostPort, MIN_HTTP_TOKEN_LENGTH } from "./http.js";
export type { HttpExpose, HttpExposeOptions } from "./http.js";
export { OAuthResourceServer, OAUTH_DEFAULTS, OAUTH_ALGORITHMS } from "./oauth.js";
export type { OAuthOptions, OAuthCheck } from "./oauth.js";
export { SUBSCRIPTION_DEFAULTS } from "./expose-subscriptions.js";
export { serveMesh, isLegacyMessage } from "./transport-2026.js";
export type { MeshServerFactory, ServeMeshOptions, MeshServing } from "./transport-2026.js";
export type { MeshMessageRoute } from "./transport.js";
