// Building the page's elements. API data only ever reaches the page through textContent
// and attributes, never as HTML.

export const $ = (id) => document.getElementById(id);

// el("p", {className: "x", dataset: {testid: "y"}}, "text", child) -> element
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Words a screen reader says after a control's visible text ("Add to cart" + " Stardew
// Valley"), so the spoken name begins with what is shown (WCAG 2.5.3, label in name).
export const spokenOnly = (text) => el("span", { className: "visually-hidden" }, text);

// A button whose visible text can change ("Copy" → "Copied") while the spoken rest stays.
export function labelledButton(visible, spoken, props) {
  return el("button", { type: "button", ...props }, el("span", { className: "visible-text" }, visible), spokenOnly(spoken));
}

export function setVisibleText(button, text) {
  button.querySelector(".visible-text, .copy-text").textContent = text;
}
