// Put into a built docs page by tests/test_docs_site.py. After the page and its scripts
// have loaded, writes a JSON report into <script id="errpolicy-layout-report">: for each
// table and code block, how many pixels of it a reader cannot see without scrolling it
// sideways, or cannot see at all (clipped by a box, or beyond the window).
(() => {
  const name = (el) =>
    el.tagName.toLowerCase() +
    (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className.trim()
      ? "." + el.className.trim().split(/\s+/).join(".")
      : "");

  const report = () => {
    const viewport = document.documentElement.clientWidth;
    const blocks = [...document.querySelectorAll("table, pre")].filter(
      (block) => !block.closest("nav") && block.getClientRects().length > 0,
    );
    const problems = [];
    for (const block of blocks) {
      const contentRight = block.getBoundingClientRect().left + block.scrollWidth;
      // The narrowest box that scrolls or clips it (itself included) bounds what shows.
      let visibleRight = viewport;
      let by = "window";
      for (let el = block; el && el !== document.documentElement; el = el.parentElement) {
        if (getComputedStyle(el).overflowX === "visible") continue;
        const right = el.getBoundingClientRect().left + el.clientLeft + el.clientWidth;
        if (right < visibleRight) {
          visibleRight = right;
          by = name(el);
        }
      }
      const hidden = Math.round(contentRight - visibleRight);
      if (hidden > 1) {
        problems.push({ block: name(block), text: block.textContent.trim().slice(0, 60), hidden, by });
      }
    }
    const out = document.createElement("script");
    out.type = "application/json";
    out.id = "errpolicy-layout-report";
    out.textContent = JSON.stringify({ viewport, blocks: blocks.length, problems });
    document.body.appendChild(out);
  };

  // The theme's own scripts may still rearrange the page on load (wrapping tables).
  window.addEventListener("load", () => setTimeout(report, 500));
})();
