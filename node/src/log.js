/**
 * The package's logging: an injected logger with `debug/info/warn/error(message)`
 * methods (console-compatible). Lines carry a reason and a ticket's log id, never a
 * ticket. The default drops debug and info, and sends warn/error to the console.
 */
const noop = () => {};

export const defaultLogger = Object.freeze({
  debug: noop,
  info: noop,
  warn: (message) => console.warn(`ticketd: ${message}`),
  error: (message) => console.error(`ticketd: ${message}`),
});

export function resolveLogger(logger) {
  if (logger === undefined || logger === null) return defaultLogger;
  const pick = (name) => (typeof logger[name] === "function" ? logger[name].bind(logger) : noop);
  return { debug: pick("debug"), info: pick("info"), warn: pick("warn"), error: pick("error") };
}
