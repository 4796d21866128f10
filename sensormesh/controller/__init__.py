# The controller: CPython only, never imported by device code.
#
# model.py      the validated pipeline graph and the device inventory
# catalog.py    the built-in step types: arity, parameters, rate and cost estimates
# shipping.py   user functions -> shipped source ("module:name" + code for the assignment)
# builder.py    the Python API (re-exported by sensormesh.api)
# pipeline_file.py  the YAML pipeline file -> the same model, errors with line numbers
# placement.py  steps -> devices (central, edge, optimal ILP) and one assignment per device
# plan_cli.py   `sensormesh plan FILE`
# errors.py     the exception types all of the above raise
