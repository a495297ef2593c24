// Thumbnails of items' input images, fetched with the key through the API, which answers
// with a redirect to a short-lived signed URL (204 when the input is not a picture).
// Each is fetched once per page load: a refresh reuses the object URL.

import {el, itemPath} from "./dom.js";

const cache = new Map();  // "job/key" -> Promise<object URL or null>

function load(ctx, item) {
  const id = `${item.job}/${item.key}`;
  if (!cache.has(id)) {
    // (a 204, an empty body, means the input is not a photo; an error shows no preview)
    cache.set(id, ctx.blob(`${itemPath(item)}/thumbnail`).then(
      (b) => (b.size ? URL.createObjectURL(b) : null), () => null));
  }
  return cache.get(id);
}

export function thumbnail(ctx, item) {
  if (item.status === "pending" || item.status === "cancelled") return "";
  const slot = el("span", {class: "muted"}, "…");
  load(ctx, item).then((url) => {
    slot.replaceWith(url ? el("img", {class: "thumb", src: url, alt: `${item.key}`,
                                      width: 48, height: 48})
      : el("span", {class: "muted"}, "no preview"));
  });
  return slot;
}
