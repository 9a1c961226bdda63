/**
 * The tool server the conformance run puts behind the proxy (bench/mcp-conformance.ts): a stdio
 * MCP server, written here on the SDK's low-level Server, that has the tools, resources and
 * prompts the `@modelcontextprotocol/conformance` server scenarios call by name (the package
 * ships no reference server; its scenario texts say what each must return). Every tool is marked
 * read-only so the conformance mapping's policy allows it at once: the run measures the proxy,
 * not a person. Not a product component.
 */
import { Server, type CallToolResult, type Tool } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';

/** 1x1 red PNG and a 44-byte silent WAV header: the smallest valid media the scenarios accept. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = Buffer.from('RIFF$\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\0\0\0\0', 'latin1').toString(
  'base64',
);
const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const noArgs = { type: 'object' as const, properties: {} };
const tool = (name: string, description: string, inputSchema: Tool['inputSchema'] = noArgs): Tool => ({
  name,
  description,
  inputSchema,
  annotations: READ_ONLY,
});
const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const TOOLS: Tool[] = [
  tool('test_simple_text', 'Returns one text item.'),
  tool('test_image_content', 'Returns an image.'),
  tool('test_audio_content', 'Returns audio.'),
  tool('test_embedded_resource', 'Returns an embedded resource.'),
  tool('test_multiple_content_types', 'Returns text, an image and a resource.'),
  tool('test_tool_with_logging', 'Logs three lines while it runs.'),
  tool('test_tool_with_progress', 'Reports progress three times.'),
  tool('test_error_handling', 'Always fails with a tool error.'),
  tool('test_sampling', 'Asks the client for a completion.', {
    type: 'object',
    properties: { prompt: { type: 'string' } },
    required: ['prompt'],
  }),
  tool('test_elicitation', 'Asks the user for a name and email.', {
    type: 'object',
    properties: { message: { type: 'string' } },
    required: ['message'],
  }),
  tool('test_elicitation_sep1034_defaults', 'Asks the user with defaults for every primitive type.'),
  tool('test_elicitation_sep1330_enums', 'Asks the user with every enum variant.'),
];

function createServer(): Server {
  const server = new Server(
    { name: 'conformance-tool-server', version: '1.0.0' },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        completions: {},
        logging: {},
      },
    },
  );
  server.setRequestHandler('tools/list', () => ({ tools: TOOLS }));
  server.setRequestHandler('tools/call', async (request, ctx) => {
    const args = (request.params.arguments ?? {}) as Record<string, unknown>;
    switch (request.params.name) {
      case 'test_simple_text':
        return text('This is a simple text response for testing.');
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
      case 'test_embedded_resource':
        return {
          content: [
            {
              type: 'resource',
              resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
            },
          ],
        };
      case 'test_multiple_content_types':
        return {
          content: [
            { type: 'text', text: 'Multiple content types test:' },
            { type: 'image', data: PNG, mimeType: 'image/png' },
            {
              type: 'resource',
              resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' },
            },
          ],
        };
      case 'test_tool_with_logging':
        for (const line of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
          await ctx.mcpReq.log('info', line);
          await pause(50);
        }
        return text('Tool with logging executed successfully');
      case 'test_tool_with_progress': {
        const progressToken = ctx.mcpReq._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
          if (progressToken !== undefined)
            await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
          await pause(50);
        }
        return text('Tool with progress executed successfully');
      }
      case 'test_error_handling':
        return { content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }], isError: true };
      case 'test_sampling': {
        const answer = await ctx.mcpReq.requestSampling({
          messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }],
          maxTokens: 100,
        });
        return text(`LLM response: ${'text' in answer.content ? String(answer.content.text) : JSON.stringify(answer.content)}`);
      }
      case 'test_elicitation': {
        const answer = await ctx.mcpReq.elicitInput({
          message: String(args.message),
          requestedSchema: {
            type: 'object',
            properties: {
              username: { type: 'string', description: "User's response" },
              email: { type: 'string', description: "User's email address" },
            },
            required: ['username', 'email'],
          },
        });
        return text(`User response: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
      }
      case 'test_elicitation_sep1034_defaults': {
        const answer = await ctx.mcpReq.elicitInput({
          message: 'Please review and update the form fields with defaults',
          requestedSchema: {
            type: 'object',
            properties: {
              name: { type: 'string', default: 'John Doe' },
              age: { type: 'integer', default: 30 },
              score: { type: 'number', default: 95.5 },
              status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
              verified: { type: 'boolean', default: true },
            },
          },
        });
        return text(`Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
      }
      case 'test_elicitation_sep1330_enums': {
        const answer = await ctx.mcpReq.elicitInput({
          message: 'Please select options from the enum fields',
          requestedSchema: {
            type: 'object',
            properties: {
              untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
              titledSingle: {
                type: 'string',
                oneOf: [
                  { const: 'value1', title: 'First Option' },
                  { const: 'value2', title: 'Second Option' },
                  { const: 'value3', title: 'Third Option' },
                ],
              },
              legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
              untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
              titledMulti: {
                type: 'array',
                items: {
                  anyOf: [
                    { const: 'value1', title: 'First Choice' },
                    { const: 'value2', title: 'Second Choice' },
                    { const: 'value3', title: 'Third Choice' },
                  ],
                },
              },
            },
          },
        });
        return text(`Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
      }
      default:
        return { content: [{ type: 'text', text: `unknown tool ${JSON.stringify(request.params.name)}` }], isError: true };
    }
  });
  server.setRequestHandler('resources/list', () => ({
    resources: [
      { uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain' },
      { uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png' },
      { uri: 'test://watched-resource', name: 'watched-resource', mimeType: 'text/plain' },
    ],
  }));
  server.setRequestHandler('resources/templates/list', () => ({
    resourceTemplates: [{ uriTemplate: 'test://template/{id}/data', name: 'template', mimeType: 'application/json' }],
  }));
  server.setRequestHandler('resources/read', (request) => {
    const uri = request.params.uri;
    if (uri === 'test://static-text' || uri === 'test://watched-resource')
      return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] };
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] };
    const templated = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (templated)
      return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id: templated[1], templateTest: true }) }] };
    throw new Error(`unknown resource ${uri}`);
  });
  server.setRequestHandler('resources/subscribe', () => ({}));
  server.setRequestHandler('resources/unsubscribe', () => ({}));
  server.setRequestHandler('prompts/list', () => ({
    prompts: [
      { name: 'test_simple_prompt', description: 'A prompt without arguments.' },
      {
        name: 'test_prompt_with_arguments',
        description: 'A prompt filled in from two arguments.',
        arguments: [
          { name: 'arg1', required: true },
          { name: 'arg2', required: true },
        ],
      },
      {
        name: 'test_prompt_with_embedded_resource',
        description: 'A prompt embedding a resource.',
        arguments: [{ name: 'resourceUri', required: true }],
      },
      { name: 'test_prompt_with_image', description: 'A prompt with an image.' },
    ],
  }));
  server.setRequestHandler('prompts/get', (request) => {
    const args = request.params.arguments ?? {};
    switch (request.params.name) {
      case 'test_simple_prompt':
        return { messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] };
      case 'test_prompt_with_arguments':
        return {
          messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'` } }],
        };
      case 'test_prompt_with_embedded_resource':
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: { uri: String(args.resourceUri), mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
              },
            },
            { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
          ],
        };
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
            { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
          ],
        };
      default:
        throw new Error(`unknown prompt ${request.params.name}`);
    }
  });
  server.setRequestHandler('completion/complete', () => ({ completion: { values: [], total: 0, hasMore: false } }));
  server.setRequestHandler('logging/setLevel', () => ({}));
  return server;
}

const handle = serveStdio(createServer);
process.stdin.once('end', () => void handle.close());
