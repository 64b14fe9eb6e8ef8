// The GraphiQL fetcher: HTTP to same-origin /graphql, subscriptions over a
// websocket to the same path with graphql-ws (the graphql-transport-ws
// protocol). The Authorization header from the headers editor goes on every
// HTTP request and, for subscriptions, into the connection_init payload as
// { authorization }, which is where the server reads it.
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';

export const PLACEHOLDER_AUTHORIZATION = 'Bearer <paste a token from signIn>';

export function endpoints(location) {
  const url = location.origin + '/graphql';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return { url, subscriptionUrl: scheme + '//' + location.host + '/graphql' };
}

// authorizationOf returns the headers editor's Authorization value, or
// undefined when it is missing, blank or still the placeholder (sending the
// placeholder would make the server refuse even signIn with 401).
export function authorizationOf(headers) {
  if (!headers || typeof headers !== 'object') return undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'authorization') continue;
    if (typeof value !== 'string') return undefined;
    const v = value.trim();
    if (v === '' || v === 'Bearer' || v.includes('<')) return undefined;
    return v;
  }
  return undefined;
}

// withoutPlaceholder drops an unusable Authorization header and keeps the rest.
function withoutPlaceholder(headers) {
  const out = {};
  if (!headers || typeof headers !== 'object') return out;
  const auth = authorizationOf(headers);
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() === 'authorization') {
      if (auth !== undefined) out.Authorization = auth;
    } else {
      out[name] = value;
    }
  }
  return out;
}

export function createMutuoFetcher(location) {
  const { url, subscriptionUrl } = endpoints(location);
  // One websocket client (and one GraphiQL fetcher around it) per
  // Authorization value: a new token opens a new connection with the new
  // connection_init payload; the previous one is closed.
  let current = null; // { auth, client, fetcher }
  const fetcherFor = (auth) => {
    if (current && current.auth === auth) return current.fetcher;
    if (current) current.client.dispose();
    const client = createClient({
      url: subscriptionUrl,
      lazy: true,
      retryAttempts: 3,
      connectionParams: auth === undefined ? {} : { authorization: auth },
    });
    const fetcher = createGraphiQLFetcher({ url, wsClient: client });
    current = { auth, client, fetcher };
    return fetcher;
  };
  return (graphQLParams, opts) => {
    const headers = withoutPlaceholder(opts && opts.headers);
    return fetcherFor(headers.Authorization)(graphQLParams, { ...opts, headers });
  };
}
