// The invoice page's Print / PDF button: the browser prints (and saves as PDF) with css/print.css.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-print]");
  if (button) {
    event.preventDefault();
    window.print();
  }
});
