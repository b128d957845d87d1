// Drives a sipgrid APIServer with Routr's Node SDK: Domains and Agents, create to delete.
// Usage: node sdk_check.js HOST:PORT USERNAME PASSWORD; prints one JSON line of results.
const SDK = require("@routr/sdk").default;

async function main() {
  const [endpoint, username, password] = process.argv.slice(2);
  const options = { endpoint, insecure: true, username, password };
  const domains = new SDK.Domains(options);
  const agents = new SDK.Agents(options);
  const credentials = new SDK.Credentials(options);
  const out = {};

  const domain = await domains.createDomain({ name: "Node Domain", domainUri: "node.sip.local" });
  out.domainRef = domain.ref;
  out.domainUri = domain.domainUri;
  const updatedDomain = await domains.updateDomain({ ref: domain.ref, name: "Node Domain 2" });
  out.updatedDomainName = updatedDomain.name;
  out.listedDomains = (await domains.listDomains({ pageSize: 10, pageToken: "" })).items.map((d) => d.ref);

  const creds = await credentials.createCredentials({ name: "Node creds", username: "3001", password: "node-secret" });
  const agent = await agents.createAgent({
    name: "Node Agent",
    username: "3001",
    domainRef: domain.ref,
    credentialsRef: creds.ref,
    privacy: SDK.Privacy ? SDK.Privacy.NONE : "NONE",
    enabled: true,
  });
  out.agentRef = agent.ref;
  out.agentDomainUri = agent.domain && agent.domain.domainUri;
  out.gotAgentName = (await agents.getAgent(agent.ref)).name;
  out.updatedAgentName = (await agents.updateAgent({ ref: agent.ref, name: "Node Agent 2" })).name;
  out.listedAgents = (await agents.listAgents({ pageSize: 10, pageToken: "" })).items.map((a) => a.ref);

  try {
    await domains.deleteDomain(domain.ref);
    out.deleteReferencedDomain = "deleted";
  } catch (error) {
    out.deleteReferencedDomain = String(error.code);
  }
  await agents.deleteAgent(agent.ref);
  await credentials.deleteCredentials(creds.ref);
  await domains.deleteDomain(domain.ref);
  out.domainsAfter = (await domains.listDomains({ pageSize: 10, pageToken: "" })).items.length;
  try {
    await agents.getAgent(agent.ref);
    out.getDeletedAgent = "found";
  } catch (error) {
    out.getDeletedAgent = String(error.code);
  }
  console.log(JSON.stringify(out));
}

main().catch((error) => {
  console.error(`sdk_check failed: ${error && (error.stack || error.message || error)}`);
  process.exit(1);
});
