"""Policy-as-code: ordered rules with CEL conditions deciding allow / deny / require approval."""
