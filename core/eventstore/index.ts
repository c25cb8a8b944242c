/** The event store's domain and port: import from here; adapters live in core/adapters/. */
export * from "./catalogue.js";
export * from "./cursor.js";
export * from "./errors.js";
export * from "./event-store.js";
export * from "./events.js";
export * from "./projection.js";
export * from "./stream-id.js";
