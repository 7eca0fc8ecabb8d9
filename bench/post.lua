-- wrk script: POST a submission, as the handler's clients do.
wrk.method = "POST"
wrk.body = '{"id":"1","customername":"Contoso"}'
wrk.headers["Content-Type"] = "application/json"
