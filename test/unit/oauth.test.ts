/**
 * src/mcp/oauth.ts without sockets: where an issuer's metadata is looked for (RFC 8414's path
 * insertion, then OpenID's appended path), which scopes a token grants, what the bridge
 * describes of itself (RFC 9728) and points clients at, and the setup it refuses.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { checkIssuerUrl, grantedScopes, issuerMetadataUrls, OAuthResourceServer } from "../../src/mcp/oauth.js";

describe("oauth resource server pieces", () => {
  it("looks for issuer metadata at RFC 8414's inserted path, then OpenID's appended one", () => {
    expect(issuerMetadataUrls("https://auth.example.com")).toEqual([
      "https://auth.example.com/.well-known/oauth-authorization-server",
      "https://auth.example.com/.well-known/openid-configuration",
    ]);
    expect(issuerMetadataUrls("https://auth.example.com/tenant1/")).toEqual([
      "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
      "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]);
  });

  it("reads granted scopes from scope (space-separated) or scp (list or string), nothing else", () => {
    expect([...grantedScopes({ scope: "a b  c" })]).toEqual(["a", "b", "c"]);
    expect([...grantedScopes({ scp: ["a", 5, "b"] })]).toEqual(["a", "b"]);
    expect([...grantedScopes({ scp: "x y" })]).toEqual(["x", "y"]);
    expect([...grantedScopes({ scope: 7 })]).toEqual([]);
    expect([...grantedScopes({})]).toEqual([]);
  });

  it("describes itself at the path-suffixed metadata URL, with the canonical resource (given or the listener's)", () => {
    const given = new OAuthResourceServer({ issuer: "https://auth.example.com", resource: "https://mcp.example.com/api/mcp", scopes: ["mcp"] });
    expect(given.metadataUrl).toBe("https://mcp.example.com/.well-known/oauth-protected-resource/api/mcp");
    expect([...given.metadataPaths("/mcp")].sort()).toEqual(["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/api/mcp", "/.well-known/oauth-protected-resource/mcp"]);
    expect(given.audience).toBe("https://mcp.example.com/api/mcp");
    given.setDefaultResource("http://127.0.0.1:1/mcp"); // a configured resource wins
    expect(given.metadata()).toMatchObject({ resource: "https://mcp.example.com/api/mcp", authorization_servers: ["https://auth.example.com"], scopes_supported: ["mcp"] });
    const listened = new OAuthResourceServer({ issuer: "https://auth.example.com", audience: "api://zmcp" });
    expect(() => listened.resource).toThrow(ConfigError);
    listened.setDefaultResource("http://127.0.0.1:8808/mcp");
    expect(listened.resource).toBe("http://127.0.0.1:8808/mcp");
    expect(listened.audience).toBe("api://zmcp");
  });

  it("refuses an issuer that is not https (but loopback http), has a query, or is not a URL; a resource that is not a URL", () => {
    for (const bad of ["http://auth.example.com", "https://auth.example.com/?x=1", "auth.example.com", "ftp://127.0.0.1"]) {
      expect(() => checkIssuerUrl(bad), bad).toThrow(ConfigError);
    }
    expect(() => checkIssuerUrl("http://127.0.0.1:9000")).not.toThrow();
    expect(() => checkIssuerUrl("http://localhost:9000/realm")).not.toThrow();
    expect(() => new OAuthResourceServer({ issuer: "https://a.example", resource: "not a url" })).toThrow(ConfigError);
  });
});
