/**
 * The tray icon (32 x 32 PNG, a teal disc), inline so the shell needs no file path that differs
 * between a development run and a packaged app (asar). build/icon.png is the app icon.
 */
export const TRAY_ICON_PNG_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAAc0lEQVR42u2XwQ0AIAgDHcI5fbu9TqABpFKJTXiauxeWUl5KbX1IJgQKkTmFH0l4wU0S3nCVBAoukkDDtxK34EsJzeNV4ALSqAU84SYJegFrvsAXyCOQfw+Er+JnPqM0nYC3klGUUopaTnGYUJxmFMcpOhOUM/4L50rUygAAAABJRU5ErkJggg==';
