  // Decision buttons: one item ("approve", "reject") or its whole series ("series/approve", "series/reject").
  document.querySelectorAll("button[data-decision]").forEach((button) => {
    button.addEventListener("click", async () => {
      const holder = button.closest("[data-item]");
      const note = holder.querySelector("input.note").value;
      const response = await fetch(`api/quarantine/${holder.dataset.item}/${button.dataset.decision}`, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({note: note || null}),
      });
      const body = await response.json().catch(() => ({}));
      const message = document.getElementById("message");
      if (!response.ok) {
        message.textContent = `Item ${holder.dataset.item}: ${body.detail || response.statusText}`;
        return;
      }
      const done = body.items ? body.items.map((i) => String(i.id)) : [String(body.id)];
      document.querySelectorAll("tr[data-item]").forEach((row) => { if (done.includes(row.dataset.item)) row.remove(); });
      if (holder.tagName !== "TR") holder.remove();
      message.textContent = body.items
        ? `Series of item ${holder.dataset.item}: ${body.items.length} items ${body.decision} by ${body.decided_by}` +
          (body.still_pending ? ` (${body.still_pending} wait for another curator's approval).` : ".")
        : `Item ${body.id}: ${body.state} by ${body.decided_by}.`;
    });
  });
