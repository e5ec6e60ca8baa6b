"""The page's keyboard shortcuts, as A1111's: Ctrl+Enter (Cmd+Enter on a Mac) in a tab's prompt or negative
prompt box presses that tab's Generate button.

One listener on the document (in the page's head), so it works for boxes Gradio renders later; a box is
known by its elem_id, `<mode>-prompt` or `<mode>-negative` (tabs.build_tab), its button by `<mode>-generate`.
"""

HEAD = """<script>
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.isComposing) return;
  const box = event.target.closest && event.target.closest("[id$='-prompt'], [id$='-negative']");
  if (!box) return;
  const button = document.getElementById(box.id.replace(/-(prompt|negative)$/, "-generate"));
  if (!button) return;  // another box (a hires prompt): no Generate of its own
  event.preventDefault();
  button.click();
});
</script>"""
