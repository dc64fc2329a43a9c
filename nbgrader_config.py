# nbgrader's configuration for this course. `python -m toyenv.course nbgrader` copies it into the nbgrader course
# folder it writes (nbgrader/ by default), beside source/; run the nbgrader commands in that folder.
c = get_config()  # noqa: F821  (nbgrader provides get_config when it reads this file)

# The course's cell timeout, the one `make test` gives nbval: the live training cells take up to about a minute on
# a 2-core CPU (notebook 08's), and nbgrader's default of 30 s would interrupt them, leaving later cells to fail.
c.Execute.timeout = 900

# The course's stubs are nbgrader's own; stated here so that a site-wide config cannot change them.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
