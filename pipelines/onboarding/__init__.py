"""crm init and crm check: the first steps with exports the tool has never seen."""
