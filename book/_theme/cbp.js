// A figure of a notebook's output opens at its full resolution in a new tab when tapped or clicked
// (phones show it scaled to the screen width; the full image can be zoomed there).
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll(".bd-article .cell_output img")) {
    if (img.closest("a")) continue;
    const link = document.createElement("a");
    link.href = img.src;
    link.target = "_blank";
    link.rel = "noopener";
    link.title = "open the figure at full resolution";
    img.classList.add("cbp-zoom");
    img.replaceWith(link);
    link.appendChild(img);
  }
});
