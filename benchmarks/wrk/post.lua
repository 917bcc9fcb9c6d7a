-- Makes wrk send POST requests with a fixed body and fixed header fields, read from the files
-- named by two environment variables:
--   REVDESK_WRK_BODY     the request body, sent byte for byte;
--   REVDESK_WRK_HEADERS  one "Name: value" field per line.
-- wrk builds the request once from these and sends it unchanged on every connection.

local function read_file(variable)
  local path = os.getenv(variable)
  if path == nil then
    error(variable .. " is not set: run.py sets it to a file path")
  end
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

wrk.method = "POST"
wrk.body = read_file("REVDESK_WRK_BODY")
for line in read_file("REVDESK_WRK_HEADERS"):gmatch("[^\r\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name == nil then
    error("invalid header line in REVDESK_WRK_HEADERS: " .. line)
  end
  wrk.headers[name] = value
end
