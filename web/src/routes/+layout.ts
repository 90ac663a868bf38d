// A single-page app: every route renders in the browser, against the API.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'never';
