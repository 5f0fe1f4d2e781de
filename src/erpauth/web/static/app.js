// erpauth web pages: dialogs, confirmations, copy buttons, one submission per form.
// Loaded as a file (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  function announce(text) {
    const region = document.getElementById("live-status");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function openDialog(dialog, opener) {
    dialog.returnFocusTo = opener || document.activeElement;
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector("[autofocus]") ||
      dialog.querySelector("input:not([type=hidden]), textarea, button");
    if (first) first.focus();
  }

  // Back to the button that opened it, so keyboard users keep their place.
  document.addEventListener("close", function (event) {
    const target = event.target.returnFocusTo;
    if (target && typeof target.focus === "function" && document.contains(target)) target.focus();
  }, true);

  // Copy: the Clipboard API where the page may use it, else select the text for Ctrl+C.
  async function copy(button) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    const text = "value" in field ? field.value : field.textContent;
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        copied = true;
      }
    } catch (ignored) {
      copied = false;
    }
    if (!copied) {
      field.focus();
      if (typeof field.select === "function") field.select();
      try { copied = document.execCommand("copy"); } catch (ignored) { copied = false; }
    }
    flash(button, copied ? "Copied" : "Press Ctrl+C");
    announce(
      copied ? "Copied to the clipboard." : "The text is selected: press Control+C to copy it."
    );
  }

  function flash(button, text) {
    const label = button.querySelector("[data-label]") || button;
    if (!button.dataset.original) button.dataset.original = label.textContent;
    label.textContent = text;
    window.clearTimeout(button.flashTimer);
    button.flashTimer = window.setTimeout(function () {
      label.textContent = button.dataset.original;
    }, 2000);
  }

  function askToConfirm(form, submitter) {
    const dialog = document.getElementById("confirm-dialog");
    if (!dialog) return false;
    const title = form.dataset.confirmTitle || "Are you sure?";
    dialog.querySelector("#confirm-title").textContent = title;
    dialog.querySelector("#confirm-message").textContent = form.dataset.confirm;
    const ok = dialog.querySelector("#confirm-ok");
    ok.textContent = form.dataset.confirmLabel || "Confirm";
    ok.onclick = function () {
      form.dataset.confirmed = "yes";
      dialog.close();
      form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
    };
    openDialog(dialog, submitter);
    return true;
  }

  document.addEventListener("click", function (event) {
    if (event.target instanceof HTMLDialogElement) {
      event.target.close(); // a click on the backdrop
      return;
    }
    const opener = event.target.closest("[data-dialog-open]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.dialogOpen);
      if (dialog) {
        event.preventDefault();
        openDialog(dialog, opener);
      }
      return;
    }
    const closer = event.target.closest("[data-dialog-close]");
    if (closer) {
      closer.closest("dialog").close();
      return;
    }
    const copier = event.target.closest("[data-copy]");
    if (copier) copy(copier);
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset.confirm && form.dataset.confirmed !== "yes") {
      if (askToConfirm(form, event.submitter)) event.preventDefault();
      return;
    }
    // A second click while the first is on its way would send the form twice.
    if (form.dataset.busy) {
      event.preventDefault();
      return;
    }
    form.dataset.busy = "yes";
    form.setAttribute("aria-busy", "true");
    window.setTimeout(function () { release(form); }, 10000);
  });

  function release(form) {
    delete form.dataset.busy;
    delete form.dataset.confirmed;
    form.removeAttribute("aria-busy");
  }

  // Pages restored from the back-forward cache keep their state; make forms usable again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[aria-busy]").forEach(release);
  });

  // A page that answers a form shows its own address, so a reload fetches the page instead of
  // sending the form (and its password) again.
  if (document.body.dataset.address) {
    window.history.replaceState(null, "", document.body.dataset.address);
  }

  const pending = document.querySelector("dialog[data-open-on-load]");
  if (pending) openDialog(pending);
})();
