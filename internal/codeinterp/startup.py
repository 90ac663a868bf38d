# Run in every IPython kernel of Wrenn's code interpreter when it starts
# (IPKernelApp.exec_files). A pandas DataFrame shown as a result also
# carries its columns as JSON under "e2b/data", which E2B's SDKs expose as
# Result.data. Nothing is left in the user's namespace.
def _wrenn_code_interpreter_setup():
    import json
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class DataFrameColumns(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict,)

        def __call__(self, obj):
            # A DataFrame exists only if pandas was imported: never import it here.
            pandas = sys.modules.get("pandas")
            if pandas is None or not isinstance(obj, pandas.DataFrame):
                return super().__call__(obj)
            split = json.loads(obj.to_json(orient="split", date_format="iso", default_handler=str))
            return {str(col): [row[i] for row in split["data"]] for i, col in enumerate(split["columns"])}

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["e2b/data"] = DataFrameColumns(parent=shell.display_formatter)


_wrenn_code_interpreter_setup()
del _wrenn_code_interpreter_setup
