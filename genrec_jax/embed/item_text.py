"""Item text -> one string per item, the input of the text encoder.

A template names the fields to use and their order; the rendered text is
"Title: ...; Brand: ...; ..." with missing or empty fields skipped and each value cut to
`max_chars_per_field` characters (long Amazon descriptions would otherwise crowd out the
title within the encoder's token budget).
"""

from __future__ import annotations

# Template name -> fields in rendering order; None = every field of the item, in its order.
TEMPLATES: dict[str, tuple[str, ...] | None] = {
    'amazon': ('title', 'brand', 'categories', 'description', 'price'),
    'movielens': ('title', 'year', 'genres'),
    'generic': None,
}

# 'auto' picks the template from the dataset name prefix (first match wins).
_AUTO_BY_PREFIX = (('ml-', 'movielens'), ('amazon', 'amazon'))


def resolve_template(name: str, dataset_name: str) -> str:
  """The template name to use: `name` itself, or for 'auto' the one the dataset name implies.

  'auto': names starting with 'ml-' -> 'movielens', 'amazon' -> 'amazon', else 'generic'.
  """
  if name != 'auto':
    _check_template(name)
    return name
  for prefix, template in _AUTO_BY_PREFIX:
    if dataset_name.startswith(prefix):
      return template
  return 'generic'


def render(fields: dict[str, str], template: str, *, item_id: str = '',
           max_chars_per_field: int = 300) -> str:
  """The item's text as "Label: value; Label: value" in the template's field order.

  Fields that are missing, empty or whitespace-only are skipped; whitespace runs (newlines
  in descriptions) become single spaces. An item with none of the template's fields renders
  to the placeholder "Item <item_id>": its embedding then carries no semantic signal (only
  the tokens of the id), so such items are indistinguishable to text-based methods.

  Args:
    fields: the item's {field: text}, e.g. one entry of `Dataset.item_text`.
    template: a name in TEMPLATES.
    item_id: the raw item id, used only for the placeholder.
    max_chars_per_field: each value is cut to this many characters.

  Returns:
    The rendered text.
  """
  if max_chars_per_field <= 0:
    raise ValueError(f'max_chars_per_field must be positive, got {max_chars_per_field}')
  parts = [f'{_label(name)}: {value[:max_chars_per_field].strip()}'
           for name, value in _template_values(fields, template)]
  return '; '.join(parts) if parts else placeholder(item_id)


def has_text(fields: dict[str, str], template: str) -> bool:
  """Whether the item has any of the template's fields (else it renders a placeholder)."""
  return bool(_template_values(fields, template))


def placeholder(item_id: str) -> str:
  """The text of an item without any text."""
  return f'Item {item_id}'.strip()


def _template_values(fields: dict[str, str], template: str) -> list[tuple[str, str]]:
  """(field, whitespace-normalised value) of the template's non-empty fields, in order."""
  _check_template(template)
  names = TEMPLATES[template]
  if names is None:
    names = tuple(fields)
  values = [(name, ' '.join(str(fields.get(name) or '').split())) for name in names]
  return [(name, value) for name, value in values if value]


def _label(field: str) -> str:
  return field.replace('_', ' ').strip().capitalize()


def _check_template(name: str) -> None:
  if name not in TEMPLATES:
    raise ValueError(f'Unknown item text template {name!r}; known: {sorted(TEMPLATES)} '
                     "(or 'auto' to choose by dataset name).")
