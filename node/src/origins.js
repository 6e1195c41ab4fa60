/**
 * Web origins: one canonical form, so that the bound and the presented origin
 * compare as plain strings (docs/PROTOCOL.md section 5). The same rules as the
 * Python `canonical_origin`: `scheme://host[:port]`, http or https only, lower-case
 * scheme and host, no default port; `null`, paths (even `/`), queries, fragments,
 * userinfo, non-ASCII and control characters are refused.
 */
import { isIPv6 } from "node:net";

export const MAX_ORIGIN_LENGTH = 512;
const DEFAULT_PORTS = { http: 80, https: 443 };
const ORIGIN = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4_LIKE = /^[0-9.]+$/;
const NUMBER_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

export class InvalidOrigin extends Error {
  constructor(message) {
    super(message);
    this.name = "InvalidOrigin";
  }
}

/** A dotted-quad IPv4 address as Python's ipaddress reads it (no leading zeros), or null. */
export function parseIPv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
  }
  return parts.join(".");
}

/** The eight 16-bit groups of an IPv6 address, or null. */
export function ipv6Groups(text) {
  if (!isIPv6(text) || text.includes("%")) return null;
  let hostname;
  try {
    hostname = new URL(`http://[${text}]/`).hostname; // WHATWG serialisation: compressed
  } catch {
    return null;
  }
  const compressed = hostname.slice(1, -1);
  const [head, tail] = compressed.includes("::") ? compressed.split("::") : [compressed, null];
  const left = head ? head.split(":") : [];
  const right = tail === null ? [] : tail ? tail.split(":") : [];
  const zeros = tail === null ? [] : Array(8 - left.length - right.length).fill("0");
  return { groups: [...left, ...zeros, ...right].map((g) => parseInt(g, 16)), compressed };
}

function canonicalHost(host) {
  if (host.startsWith("[")) {
    const parsed = ipv6Groups(host.slice(1, -1));
    if (parsed === null) throw new InvalidOrigin("origin host is not a valid IPv6 address");
    return `[${parsed.compressed}]`;
  }
  host = host.toLowerCase();
  if (IPV4_LIKE.test(host)) {
    const address = parseIPv4(host);
    if (address === null) throw new InvalidOrigin("origin host is not a valid IPv4 address");
    return address;
  }
  if (host.length > 253) throw new InvalidOrigin("origin host is too long");
  const labels = host.split(".");
  if (!labels.every((label) => LABEL.test(label))) {
    throw new InvalidOrigin("origin host is not a valid DNS name");
  }
  if (NUMBER_LABEL.test(labels[labels.length - 1])) {
    throw new InvalidOrigin("origin host ends in a number but is not an IPv4 address");
  }
  return host;
}

/** The canonical serialisation of `value`, or throws InvalidOrigin (never echoing the value). */
export function canonicalOrigin(value) {
  if (typeof value !== "string") throw new InvalidOrigin("origin must be a string");
  if (value.length > MAX_ORIGIN_LENGTH) throw new InvalidOrigin("origin is too long");
  if (!PRINTABLE_ASCII.test(value)) {
    throw new InvalidOrigin("origin contains non-ASCII or control characters");
  }
  if (value === "null") throw new InvalidOrigin("opaque origin 'null' is not allowed");
  const match = ORIGIN.exec(value);
  if (match === null) {
    throw new InvalidOrigin("origin must be scheme://host[:port] with nothing else");
  }
  const scheme = match[1].toLowerCase();
  if (!Object.hasOwn(DEFAULT_PORTS, scheme)) {
    throw new InvalidOrigin("origin scheme must be http or https");
  }
  const host = canonicalHost(match[2]);
  const portText = match[3];
  if (portText === undefined) return `${scheme}://${host}`;
  if (portText.length > 1 && portText.startsWith("0")) {
    throw new InvalidOrigin("origin port has leading zeros");
  }
  const port = Number(portText);
  if (!(port > 0 && port < 65536)) throw new InvalidOrigin("origin port is out of range");
  return port === DEFAULT_PORTS[scheme] ? `${scheme}://${host}` : `${scheme}://${host}:${port}`;
}
