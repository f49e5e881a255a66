/** The MCP bridge (`zmcp/mcp`): kept apart from the core API so that plain agents do not load the MCP SDK. */
export { MeshExposer, parseTarget, toolResult, errorResult, toMcpError, NAME_SEPARATOR } from "./expose.js";
export type { ExposeOptions, ExposeTarget, PrefixMode } from "./expose.js";
export { McpAttachment } from "./attach.js";
export type { AttachOptions } from "./attach.js";
