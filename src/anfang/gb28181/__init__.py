"""GB/T 28181-2016 device access: SIP signalling (``sip/``), MANSCDP bodies (``manscdp/``), the registrar and device
health (``server``), upward cascade (``cascade``), the simulator (``simulator``) and the console/API (``views``)."""
