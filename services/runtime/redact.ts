/** Secrets never reach logs, errors or metrics: one place that hides them. */

/** A URL with its password (and any `password` query parameter) replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    if (u.searchParams.has('password')) u.searchParams.set('password', '***');
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
  }
}

/** Every password of a URL in free text (`scheme://user:password@host`) replaced by `***`. */
export function redactUrls(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s"'?#]+):[^@/\s"']+@/gi, '$1:***@');
}

/**
 * Free text (a log line, an error message) with every password of a URL and every given secret
 * replaced by `***`, also in the escaped form JSON gives it (a log line is JSON).
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = redactUrls(text);
  for (const s of secrets) {
    if (s.length < 4) continue; // too short to tell from other text; never a generated secret
    out = out.split(s).join('***');
    const escaped = JSON.stringify(s).slice(1, -1);
    if (escaped !== s) out = out.split(escaped).join('***');
  }
  return out;
}
