"""Early warning (预警): sensor rules, plate and face watchlists, behaviour models, the warning lifecycle, routing to
the responsible officer, and real-time push to police terminals."""
