"""`pgcc dashboard`: a small web page over one environment (optional extra
`pgcc[dashboard]`: Starlette, Jinja2, uvicorn)."""
